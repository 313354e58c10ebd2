"""Changing who may read an image's files in imageDir without taking access away from
anyone who still has it.

Two files carry an image's access: `<id>.<format>` (mode and POSIX ACL) and `<id>.meta`
(mode, ACL, and the USERACL/GROUPACL lines the privileged runtime checks for `id:`). The
runtime reads `.meta` first and opens the image after it, so:

- widening (everyone admitted before still is): the image first, then `.meta`;
- narrowing (nobody new is admitted): `.meta` first, then the image;
- neither (one user in, another out): widen to both, then narrow.

The sidecar `<id>.json` keeps the access of the pull that published it: it names that
pull's source, which a private tag's users may not want shown to everyone.

The caller holds the image's lock (`store_images.lock_image`) in the transaction that
records the new access, so two changes of one image never interleave.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from shifter.gateway.access import ImageAccess
from shifter.gateway.transfer import ImageTransfer
from shifter.gateway.worker_dirs import META_SCRATCH_PREFIX
from shifter.image.meta import with_acls


class ImageFiles:
    """The published files of one image on one platform."""

    def __init__(
        self,
        transfer: ImageTransfer,
        image_id: str,
        image_format: str,
        *,
        scratch: Path,
        meta_text: str | None = None,
    ) -> None:
        self.transfer = transfer
        self.image_id = image_id
        self.image_format = image_format
        self.scratch = scratch
        # The `.meta` to publish (its ACL lines are replaced); None: the published one.
        self.meta_text = meta_text

    @property
    def image_name(self) -> str:
        return f"{self.image_id}.{self.image_format}"

    def change_access(self, before: ImageAccess | None, after: ImageAccess) -> None:
        """Give the image and its `.meta` `after`, where the image had `before` (None: it
        was just published and nobody relies on it yet)."""
        if before == after:
            self._publish_meta(after)  # the image keeps its access; `.meta` is this pull's
        elif before is None or after.covers(before):
            self._apply(after, meta_last=True)
        elif before.covers(after):
            self._apply(after, meta_last=False)
        else:
            self._apply(before.widened(after), meta_last=True)
            self._apply(after, meta_last=False)

    def _apply(self, access: ImageAccess, *, meta_last: bool) -> None:
        if meta_last:
            self.transfer.set_access([self.image_name], access=access)
            self._publish_meta(access)
        else:
            self._publish_meta(access)
            self.transfer.set_access([self.image_name], access=access)

    def _publish_meta(self, access: ImageAccess) -> None:
        if self.meta_text is None:
            self.meta_text = self.transfer.read_text(f"{self.image_id}.meta")
        text = with_acls(self.meta_text, access.user_ids, access.group_ids)
        self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=META_SCRATCH_PREFIX, dir=self.scratch) as directory:
            path = Path(directory) / f"{self.image_id}.meta"
            path.write_text(text)
            self.transfer.publish([path], access=access)
