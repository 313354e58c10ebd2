"""Putting converted images where a system's runtime finds them: the platform's imageDir.

`transfer_for(platform)` gives the transfer of one Platform of imagemanager.json:
`LocalTransfer` for accesstype "local" (imageDir on this host), `RemoteTransfer` for
"remote" (scp and ssh to the platform's hosts, with failover). Both:

- publish atomically: each file appears under its final name complete or not at all, and
  `<id>.meta`, which the runtime takes as "the image is here", appears last;
- give public images mode 0644 and private ones 0600 plus a read ACL entry per listed uid
  and gid (`ImageAccess`);
- accept only image file names (`check_file_name`) and raise `TransferError` for every
  failure, naming the platform, the host and the last lines ssh or scp wrote.

docs/transfer.md describes both modes and the decisions behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from shifter.gateway.access import AccessError, ImageAccess
from shifter.gateway.config import Platform
from shifter.gateway.transfer_files import (
    IMAGE_FILE_NAME,
    TransferError,
    check_file_name,
    publish_order,
    removal_order,
)
from shifter.gateway.transfer_local import LocalTransfer
from shifter.gateway.transfer_remote import RemoteTransfer

__all__ = [
    "IMAGE_FILE_NAME",
    "AccessError",
    "ImageAccess",
    "ImageTransfer",
    "LocalTransfer",
    "RemoteTransfer",
    "TransferError",
    "check_file_name",
    "publish_order",
    "removal_order",
    "transfer_for",
]


class ImageTransfer(Protocol):
    """What the gateway needs of a platform's image directory."""

    def publish(self, files: Sequence[Path], *, access: ImageAccess) -> None:
        """Copy each file into imageDir under its own name, `.meta` last; all or nothing
        until the renames. Names must pass `check_file_name`."""

    def remove(self, names: Sequence[str]) -> None:
        """Delete these file names from imageDir, `.meta` first; a missing file is fine."""

    def exists(self, name: str) -> bool:
        """Is there a regular file of this name in imageDir."""

    def set_access(self, names: Sequence[str], *, access: ImageAccess) -> None:
        """Give files already in imageDir `access` in place (mode and POSIX ACL)."""

    def read_text(self, name: str) -> str:
        """The content of a (small) file in imageDir: a `.meta` whose ACL lines change."""


def transfer_for(platform: Platform, *, name: str | None = None) -> ImageTransfer:
    """The transfer for `platform`; `name` (its key under Platforms) is used in messages."""
    label = f"imageDir {platform.image_dir}"
    if name is not None:
        label += f" of platform {name!r}"
    if platform.accesstype == "local":
        return LocalTransfer(platform.image_dir, label=label)
    ssh = platform.ssh
    assert ssh is not None  # Platform's own validator requires it with accesstype remote
    return RemoteTransfer(
        hosts=platform.host,
        username=ssh.username,
        key=ssh.key,
        image_dir=ssh.image_dir,
        ssh_options=ssh.ssh_cmd_options,
        scp_options=ssh.scp_cmd_options,
        label=label,
        config_key=f"Platforms.{name}.ssh.imageDir" if name else "ssh.imageDir",
    )
