"""What `setupRoot` and `unsetupRoot` share: config first, then the check that they run as
root, then a clean environment."""

from __future__ import annotations

import os

from shifter.errors import PermissionDeniedError
from shifter.runtime.config.load import UdiRootConfig, config_path, load_udiroot_config
from shifter.runtime.rootfs.signature import file_stamp

# What the original gave itself (and its hooks and tools) after clearing its environment.
ROOT_PATH = "/usr/bin:/usr/sbin:/bin:/sbin"


def load_config_as_root(prog: str) -> tuple[UdiRootConfig, tuple[int, ...]]:
    """Load and validate udiRoot.conf, then refuse anyone but root (config errors come
    first). Returns the config and the file's stamp, taken *before* it was read: if the
    file changes meanwhile, the stamp is stale, never the content. Then the process
    environment is replaced by a fixed PATH, as the original did: the batch system's
    environment must not reach hooks and tools run as root."""
    try:
        stamp = file_stamp(os.stat(config_path()))
    except OSError:
        stamp = ()  # the loader reports it
    config = load_udiroot_config()
    if os.geteuid() != 0:
        raise PermissionDeniedError(
            f"{prog} must be run as root",
            hint=f"{prog} runs in the job prolog/epilog as root; users run `shifter`",
        )
    os.environ.clear()
    os.environ["PATH"] = ROOT_PATH
    return config, stamp
