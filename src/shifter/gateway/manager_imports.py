"""The import requests of the image manager: a user's squashfs file as a `custom` image,
and the rule that a custom tag belongs to its first importer (docs/gateway.md)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection

from shifter.gateway import store_images as images
from shifter.gateway.failures import BadRequest, Forbidden
from shifter.gateway.imports import open_for_user
from shifter.gateway.manager_parts import ManagerParts
from shifter.gateway.records import ImageRecord, Requester, Status
from shifter.gateway.settings import ServiceSettings

log = logging.getLogger(__name__)

IMPORT_TYPES = ("custom",)
IMPORT_FORMATS = ("squashfs",)


class ImportRequests(ManagerParts):
    """Mixed into `ImageManager`, which provides what is declared here."""

    settings: ServiceSettings

    def _pullable(self, record: ImageRecord, now: float) -> bool:
        raise NotImplementedError

    def _start(self, conn: Connection, kind: str, current: ImageRecord | None,
               who: Requester, *, system: str, itype: str, tag: str, fmt: str,
               params: Mapping[str, Any]) -> ImageRecord:
        raise NotImplementedError

    def doimport(
        self, system: str, itype: str, tag: str, who: Requester, *, filepath: Any, fmt: Any
    ) -> tuple[ImageRecord, Status | None]:
        """Queue the import of a squashfs file the caller can read (contract §4)."""
        self.platform(system)
        if not self.config.import_enabled:
            raise Forbidden("image import is disabled on this gateway",
                            hint="the gateway's ImportUsers setting lists who may import")
        if who.user is None or not self.config.may_import(who.user):
            raise Forbidden(f"{who.describe()} may not import images",
                            hint="the gateway's ImportUsers setting lists who may import")
        tag = self.normal_tag(itype, tag, IMPORT_TYPES)
        if not isinstance(filepath, str) or not filepath:
            raise BadRequest("the request must give the image file as \"filepath\"")
        if fmt not in IMPORT_FORMATS:
            raise BadRequest(f"cannot import format {fmt!r}", hint='send "format": "squashfs"')
        # Checked now so the caller hears at once; the worker checks again before copying.
        os.close(open_for_user(filepath, who, max_bytes=self.settings.import_max_bytes))

        def decide(conn: Connection) -> tuple[ImageRecord, Status | None, bool]:
            now = self.clock()
            self._forget_failures(conn, system, now)
            self._check_owner(conn, system, itype, tag, who, "import")
            current = images.active(conn, system, itype, tag) or images.ready_by_tag(
                conn, system, itype, tag)
            if current is not None and not self._pullable(current, now):
                return current, None, False
            created = self._start(
                conn, "import", current, who, system=system, itype=itype, tag=tag, fmt=fmt,
                params={"filepath": filepath, "format": fmt},
            )
            return created, Status.INIT, True

        record, shown, new_job = self.store.write(decide)
        if new_job:
            log.info("import accepted: %s:%s from %s for %s", itype, tag, filepath, who.describe())
            self.on_new_job()
        return record, shown


    def _check_owner(
        self, conn: Connection, system: str, itype: str, tag: str, who: Requester, doing: str
    ) -> None:
        """A custom tag belongs to its first importer: only they (or an admin) may import
        over it or expire it. One being imported belongs to whoever started the import."""
        if who.user is not None and self.platform(system).is_admin(who.user):
            return
        pointed = images.tag_target(conn, system, itype, tag)
        in_flight = images.active(conn, system, itype, tag)
        if pointed is not None:
            owner = pointed[1].owner
        elif in_flight is not None and in_flight.status is not Status.FAILURE:
            owner = in_flight.owner
        else:
            return
        if owner == who.uid:
            return
        whose = "has no recorded owner" if owner is None else "belongs to another user"
        raise Forbidden(f"{itype}:{tag} {whose}: {who.describe()} may not {doing} it",
                        hint="choose another name, or ask the gateway's admins")
