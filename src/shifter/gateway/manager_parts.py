"""What the image manager's request mixins (`manager_admin`, `manager_imports`) use of it,
declared once; `ImageManager` provides each of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection

from shifter.gateway.config import GatewayConfig, Platform
from shifter.gateway.store import MetadataStore


class ManagerParts:
    config: GatewayConfig
    store: MetadataStore
    instance_id: str
    clock: Callable[[], float]
    on_new_job: Callable[[], None]

    def platform(self, system: str) -> Platform:
        raise NotImplementedError

    def normal_tag(self, itype: str, tag: str, allowed: Sequence[str]) -> str:
        raise NotImplementedError

    def _forget_failures(self, conn: Connection, system: str, now: float) -> None:
        raise NotImplementedError
