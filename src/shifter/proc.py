"""The one place shifter runs external programs.

Every call logs its argv at debug level, captures stderr, and raises `ToolError` with the
tool's last stderr lines when it fails; a missing program raises `ToolNotFoundError` naming
the tool and, when given, the configuration key that sets its path.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from shifter.errors import ToolError, ToolNotFoundError

log = logging.getLogger(__name__)

STDERR_TAIL_LINES = 10


def find_tool(name: str, *, config_key: str | None = None) -> str:
    """Absolute path of `name` (a bare name searched on PATH, or a path checked as is)."""
    if os.sep in name:
        if os.access(name, os.X_OK) and os.path.isfile(name):
            return name
        found = None
    else:
        found = shutil.which(name)
    if found is None:
        hint = f"install it or set {config_key}" if config_key else "install it"
        raise ToolNotFoundError(f"required tool not found: {name}", hint=hint)
    return found


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def run(
    argv: Sequence[str],
    *,
    config_key: str | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    capture_stdout: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to completion; raise `ToolError` on a non-zero exit when `check`."""
    args = [str(a) for a in argv]
    args[0] = find_tool(args[0], config_key=config_key)
    log.debug("run: %s", " ".join(args))
    try:
        result = subprocess.run(
            args,
            input=input,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            stdout=subprocess.PIPE if capture_stdout else None,
            stderr=subprocess.PIPE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"{os.path.basename(args[0])} did not finish within {timeout} s",
            argv=args,
            stderr_tail=_tail((exc.stderr or b"").decode(errors="replace")),
        ) from exc
    if check and result.returncode != 0:
        stderr = (result.stderr or b"").decode(errors="replace")
        raise ToolError(
            f"{os.path.basename(args[0])} failed with exit status {result.returncode}",
            argv=args,
            returncode=result.returncode,
            stderr_tail=_tail(stderr),
        )
    return result
