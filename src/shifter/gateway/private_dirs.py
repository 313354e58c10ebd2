"""The gateway's own directories are private to its account.

The layer cache holds the layers of private images, the scratch directory their unpacked
conversions, and the metadata store who may use what: nobody else on the gateway host may
read them. At start-up each directory is created 0700, or made 0700 if it exists (a site
may have created it with its default umask), and the files already in it 0600, so a
cache filled by an older gateway is closed too. New files are created 0600 by the code
that writes them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from shifter.errors import ConfigError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private(directory: str | os.PathLike[str], *, key: str) -> None:
    """Create `directory` (and its parents) or close it and what is in it to others;
    ConfigError naming `key` when it cannot be done."""
    path = Path(directory)
    try:
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        _close(path)
        for root, directories, files in os.walk(path):
            for name in directories:
                _close(Path(root, name))
            for name in files:
                _close(Path(root, name))
    except OSError as error:
        raise ConfigError(
            f"cannot make {error.filename or path} private to the gateway's account: "
            f"{error.strerror or error}",
            key=key,
            hint="run the gateway as the account that owns it, or give it to that account",
        ) from error


def _close(path: Path) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return
    wanted = PRIVATE_DIR if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, stat.S_IMODE(info.st_mode) & wanted)
