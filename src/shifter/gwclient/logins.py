"""Registry logins saved by `shifterimg login`, sent with the user's pulls.

The file is `$XDG_CONFIG_HOME/shifter/registry-logins.json` (default
`~/.config/shifter/registry-logins.json`), a JSON object keyed by system, then by registry
location ("default" or a `Locations` name of the gateway):

    {"version": 1, "systems": {"mycluster": {"default": {"username": "u", "password": "p"}}}}

Keyed by system because HPC home directories are shared between clusters with different
gateways. The original stored munge credentials in `~/.udiRoot/.cred`; those expire, and a
file of another client's format in a shared home is better left alone, so this file is new.

The passwords are in the clear, like `~/.docker/config.json`, so the file is guarded like
an ssh key: the directory is created 0700, the file written 0600 (temp file, fsync,
rename, under a lock so two logins do not lose each other's entry), and a file that is not
a regular file owned by the user with no group or other access is refused, not read.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from shifter.errors import ConfigError, ShifterError

FILE_NAME = "registry-logins.json"
FORMAT_VERSION = 1
DEFAULT_LOCATION = "default"
MAX_FILE_BYTES = 1024 * 1024
_LOCATION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")


@dataclass(frozen=True)
class Login:
    """One registry login: the gateway gets it as `username:password`."""

    username: str
    password: str

    def token(self) -> str:
        return f"{self.username}:{self.password}"


def logins_path(environ: Mapping[str, str] = os.environ) -> str:
    """Where this user's logins live (XDG base directory rules)."""
    base = environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):  # the XDG spec says to ignore a relative value
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return os.path.join(base, "shifter", FILE_NAME)


def check_location(location: str) -> str:
    """A registry location name as `Locations` keys look (a host, host:port, or "default")."""
    if not location or not set(location) <= _LOCATION_CHARS or location[0] in ".-:":
        raise ShifterError(
            f"{location!r} is not a registry location",
            hint="name a registry host like registry.example.org, or 'default'",
        )
    return location


def check_login(login: Login) -> Login:
    if not login.username.strip() or ":" in login.username:
        raise ShifterError(
            "the user name must be non-empty and contain no ':'",
            hint="the gateway receives the login as user:password",
        )
    if not login.password:
        raise ShifterError("the password is empty", hint="type the registry password")
    if any(c in login.username + login.password for c in "\n\r\0"):
        raise ShifterError("line breaks and NUL bytes cannot be in a login")
    return login


def read_logins(system: str, path: str | None = None) -> dict[str, Login]:
    """This system's logins by location; {} when the user has none."""
    path = path or logins_path()
    entries = _system_entries(_load(path), system)
    logins = {}
    for location, entry in entries.items():
        if (isinstance(entry, dict) and isinstance(entry.get("username"), str)
                and isinstance(entry.get("password"), str)):
            logins[location] = Login(entry["username"], entry["password"])
    return logins


def authorized_locations(system: str, path: str | None = None) -> dict[str, str]:
    """What a pull sends: location -> "user:password" for this system."""
    return {location: login.token() for location, login in read_logins(system, path).items()}


def save_login(system: str, location: str, login: Login, path: str | None = None) -> str:
    """Add or replace the login for (system, location); returns the file's path."""
    check_location(location)
    check_login(login)
    entry = {"username": login.username, "password": login.password}
    return _update(system, location, entry, path or logins_path())


def remove_login(system: str, location: str, path: str | None = None) -> bool:
    """Forget the login for (system, location); False when there was none."""
    path = path or logins_path()
    if location not in _system_entries(_load(path), system):
        return False
    _update(system, location, None, path)
    return True


def _update(system: str, location: str, entry: dict[str, str] | None, path: str) -> str:
    import fcntl
    import json

    directory = os.path.dirname(path)
    _make_private_dir(directory)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)  # released when dir_fd is closed
        document = _load(path)
        systems = document.setdefault("systems", {})
        logins = systems[system] = _system_entries(document, system)
        if entry is None:
            logins.pop(location, None)
            if not logins:
                systems.pop(system)
        else:
            logins[location] = entry
        document["version"] = FORMAT_VERSION
        text = json.dumps(document, indent=2, sort_keys=True) + "\n"
        _replace(dir_fd, os.path.basename(path), text.encode("utf-8"))
    finally:
        os.close(dir_fd)
    return path


def _system_entries(document: dict, system: str) -> dict:
    entries = document.get("systems", {}).get(system)
    return entries if isinstance(entries, dict) else {}


def _make_private_dir(directory: str) -> None:
    parent = os.path.dirname(directory)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(directory, 0o700)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise ConfigError(
            "is not a directory owned by you", source=directory,
            hint=f"remove it or point XDG_CONFIG_HOME elsewhere; logins are kept in {FILE_NAME}",
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(directory, 0o700)


def _replace(dir_fd: int, name: str, data: bytes) -> None:
    temp = f".{name}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
    try:
        os.fchmod(fd, 0o600)  # the umask may have removed bits, never added: make it exact
        with os.fdopen(os.dup(fd), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    finally:
        os.close(fd)


def _load(path: str) -> dict:
    """The whole document; {} when the file does not exist. Refuses an unsafe file."""
    import json

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(
            f"cannot open: {exc.strerror}", source=path,
            hint="a symlink is refused here; make it a regular file of yours, mode 0600",
        ) from None
    try:
        info = os.fstat(fd)
        _check_private(path, info)
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise ConfigError(
            f"is not valid JSON ({exc})", source=path,
            hint="fix it, or delete it and run `shifterimg login` again",
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("systems", {}), dict):
        raise ConfigError("is not a shifter login file", source=path,
                          hint="delete it and run `shifterimg login` again")
    return document


def _check_private(path: str, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError("is not a regular file", source=path)
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"is owned by uid {info.st_uid}, not by you (uid {os.geteuid()})", source=path,
            hint="registry passwords are only read from your own file",
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"holds passwords but others may access it (mode {stat.S_IMODE(info.st_mode):04o})",
            source=path, hint=f"chmod 600 {path}",
        )
    if info.st_size > MAX_FILE_BYTES:
        raise ConfigError(f"is larger than {MAX_FILE_BYTES} bytes", source=path)
