"""Loading udiRoot.conf: find the file, refuse an unsafe one, parse it into `UdiRootConfig`.

The file decides where images live and what gets mounted as root, so, as in the original,
it must be owned by root and not writable by group or others. The check is made on the
open file (fstat), not on the name, so the file cannot be swapped between check and read.
`require_root_owned=False` exists for tests only; no environment variable turns it off.

This module is the public face of the configuration; the model, the key table and the
parser live in `model`, `keys`, `values` and `parse` (this package).
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ConfigError, ParseError
from shifter.runtime.config.keys import documented_keys
from shifter.runtime.config.model import TOOL_KEYS, ModuleConfig, UdiRootConfig
from shifter.runtime.config.parse import parse_udiroot_config
from shifter.runtime.config.values import EnvEntry, Origin, SiteVolume

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "TOOL_KEYS",
    "EnvEntry",
    "ModuleConfig",
    "Origin",
    "SiteVolume",
    "UdiRootConfig",
    "config_path",
    "documented_keys",
    "load_udiroot_config",
    "parse_udiroot_config",
]

DEFAULT_CONFIG_PATH = "/etc/shifter/udiRoot.conf"
CONFIG_ENV = "SHIFTER_CONFIG"
# A udiRoot.conf is a few kilobytes; refuse to slurp something absurd.
MAX_CONFIG_BYTES = 1024 * 1024


def config_path(path: str | None = None, *, environ: Mapping[str, str] = os.environ) -> str:
    """The file to read: `path`, else $SHIFTER_CONFIG (when non-empty), else the default."""
    if path:
        return path
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH


def _check_safe(path: str, info: os.stat_result) -> None:
    if info.st_uid != 0:
        raise ConfigError(
            f"must be owned by root, but is owned by uid {info.st_uid}",
            source=path,
            hint=f"chown root {path}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(
            f"must not be writable by group or others (mode {stat.S_IMODE(info.st_mode):04o})",
            source=path,
            hint=f"chmod go-w {path}",
        )


def _read_text(path: str, *, require_root_owned: bool) -> str:
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the launch.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ConfigError(
            "no such file",
            source=path,
            hint=f"install udiRoot.conf at {DEFAULT_CONFIG_PATH} or point {CONFIG_ENV} at it",
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot open: {exc.strerror}", source=path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError("is not a regular file", source=path)
        if require_root_owned:
            _check_safe(path, info)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"is larger than {MAX_CONFIG_BYTES} bytes", source=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ParseError("is not UTF-8 text", source=path, line=line) from None


def load_udiroot_config(
    path: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    require_root_owned: bool = True,
) -> UdiRootConfig:
    """Read, check and parse the udiRoot.conf chosen by `config_path`.

    Raises `ConfigError` for a missing, unsafe or invalid file and `ParseError` for a line
    that does not follow the format; both name the file (and the line when there is one).
    """
    chosen = config_path(path, environ=environ)
    text = _read_text(chosen, require_root_owned=require_root_owned)
    return parse_udiroot_config(text, chosen)
