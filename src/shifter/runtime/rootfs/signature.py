"""How `shifter` recognises a container that setupRoot already built for its request.

Two files in the container's /var, both written by root at the end of the build:

- `shifterConfig.json`: the original's reuse signature, byte for byte (spec 1.8):
  `{"identifier":"ID","user":"NAME","volMap":"VOLUMES","modules":"M1,M2,"}` and a newline.
  The batch system's prolog tests for it, jobs read it, and `shifter` compares it with
  the signature of its own request after a full decision (the slow way in).
- `shifterEnter.dat`: the **enter record**, everything `shifter` needs to enter without
  loading udiRoot.conf, the image's `.meta` or any heavy module: which config file (and
  which version of it: device, inode, size, mtime, ctime) the build came from, the
  signature's parts as a request states them (image id, uid, the raw volume text, module
  names), and what the launch needs inside (the image's ENV, ENTRY, CMD and WORKDIR, the
  site environment steps, the module userhooks). `shifter` trusts it only while the config
  file is unchanged; otherwise it takes the slow way.

The record is `marshal` data (builtin types only): the one serialisation the interpreter
has loaded before any import. It is read only from a root-owned file that no one else may
write; a record the running interpreter cannot read counts as absent.
"""

from __future__ import annotations

import marshal
import os
import stat

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence

    from shifter.runtime.volumes.spec import VolumeSpec

SIGNATURE_FILE = "var/shifterConfig.json"
ENTER_FILE = "var/shifterEnter.dat"
RECORD_VERSION = 1
RECORD_LIMIT = 1 << 20  # an enter record is a few kilobytes
_STAMP_FIELDS = ("st_dev", "st_ino", "st_size", "st_mtime_ns", "st_ctime_ns")


def container_signature(
    image_id: str, user: str, user_volumes: Sequence[VolumeSpec], modules: Sequence[str]
) -> str:
    """The original's reuse signature (its `shifterConfig.json`, byte for byte)."""
    from shifter.runtime.volumes.spec import volume_signature

    volume_map = volume_signature(user_volumes)
    module_list = "".join(f"{name}," for name in modules)
    return (
        f'{{"identifier":"{image_id}","user":"{user}","volMap":"{volume_map}",'
        f'"modules":"{module_list}"}}'
    )


def file_stamp(info: os.stat_result) -> tuple[int, ...]:
    """What identifies one version of a file: any write, chmod or replacement changes it."""
    return tuple(getattr(info, name) for name in _STAMP_FIELDS)


class EnterRecord:
    """The content of `shifterEnter.dat` (see the module docstring). (Plain class: the
    enter path.)"""

    __slots__ = (
        "cmd",
        "config_path",
        "config_stamp",
        "default_modules",
        "entry",
        "image_env",
        "image_id",
        "modules",
        "signature",
        "site_env",
        "udi_mount",
        "uid",
        "user",
        "userhooks",
        "volume_text",
        "workdir",
    )

    def __init__(
        self,
        *,
        config_path: str,
        config_stamp: tuple[int, ...],
        udi_mount: str,
        signature: str,
        uid: int,
        user: str,
        image_id: str,
        volume_text: str,
        modules: tuple[str, ...],
        default_modules: tuple[str, ...],
        image_env: tuple[str, ...],
        entry: tuple[str, ...] | None,
        cmd: tuple[str, ...] | None,
        workdir: str | None,
        site_env: tuple[tuple[str, str, str], ...],
        userhooks: tuple[tuple[str, str], ...],
    ) -> None:
        self.config_path = config_path
        self.config_stamp = config_stamp
        self.udi_mount = udi_mount
        self.signature = signature
        self.uid = uid
        self.user = user
        self.image_id = image_id
        self.volume_text = volume_text  # the -v values joined with ";", as given
        self.modules = modules  # active module names, in order
        self.default_modules = default_modules  # the config's defaultModules
        self.image_env = image_env
        self.entry = entry
        self.cmd = cmd
        self.workdir = workdir
        self.site_env = site_env  # (operation, name, value): environment.site_env_steps
        self.userhooks = userhooks  # (config key, path) of each active module's userhook

    def to_bytes(self) -> bytes:
        fields = {name: getattr(self, name) for name in self.__slots__}
        return marshal.dumps({"version": RECORD_VERSION, **fields})

    @classmethod
    def from_bytes(cls, data: bytes) -> EnterRecord | None:
        """The record in `data`, or None for anything else (another version, a damaged or
        foreign file)."""
        try:
            value = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(value, dict) or value.pop("version", None) != RECORD_VERSION:
            return None
        if set(value) != set(cls.__slots__):
            return None
        try:
            return cls(**value)
        except TypeError:
            return None


def read_root_file(
    path: str, limit: int, *, dir_fd: int | None = None, follow: bool = False
) -> tuple[bytes, os.stat_result] | None:
    """The content (at most `limit` bytes) and stat of `path` when it is a regular file
    only root may write; None for anything else (missing, someone else's, unreadable)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags if follow else flags | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != 0 or info.st_mode & 0o022:
            return None
        return os.read(fd, limit), info
    except OSError:
        return None
    finally:
        os.close(fd)


def read_record(root_fd: int) -> tuple[EnterRecord, bytes] | None:
    """The enter record of the container whose root is the directory `root_fd`, and its
    bytes; None when there is none, or it is not root's alone."""
    found = read_root_file(ENTER_FILE, RECORD_LIMIT, dir_fd=root_fd)
    if found is None:
        return None
    record = EnterRecord.from_bytes(found[0])
    return None if record is None else (record, found[0])
