"""What every `shifterimg` subcommand shares: the loaded config, the client, `-v` output."""

from __future__ import annotations

import os
import sys

from shifter.errors import ShifterError
from shifter.gwclient import MUNGE_SOCKET_ENV, GatewayClient
from shifter.gwclient.client import decode_json, is_json_value
from shifter.gwclient.transport import Reply
from shifter.image.descriptor import ImageDescriptor, ImageType, parse_descriptor
from shifter.runtime.config.load import UdiRootConfig

TYPE_CHECKING = False  # `typing` costs `shifterimg lookup` ~2 ms, `dataclasses` ~5 ms
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

GATEWAY_TYPES = (ImageType.DOCKER, ImageType.CUSTOM)


def describe(doc: str | None) -> str:
    """A subcommand's --help description: its module docstring without the usage prefix."""
    text = (doc or "").split("\n\n")[0]
    if text.startswith("`"):
        text = text.split("`: ", 1)[-1]
    return text[:1].upper() + text[1:]


class Context:
    """One `shifterimg` run: its validated udiRoot.conf, options and output stream.
    (A plain class: `shifterimg lookup` is called in loops by workflow tools.)"""

    def __init__(
        self,
        config: UdiRootConfig,
        verbose: bool = False,
        out: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.verbose = verbose
        self.out = sys.stdout if out is None else out
        self.environ = os.environ if environ is None else environ
        # `-v`: how many replies were printed, and the last one (its status and body): a
        # reply the same as the one before is not printed again (the gateway's hold on a
        # failed pull answers the same every 0.5 s for a while).
        self.replies_printed = 0
        self._last_reply: tuple[int, bytes] | None = None

    @property
    def system(self) -> str:
        return self.config.require_system()

    def client(self) -> GatewayClient:
        """A client for this system's gateways; with `-v` it prints every reply."""
        return GatewayClient(
            self.config.require_image_gateways(),
            self.system,
            timeout=self.config.gateway_timeout,
            connect_timeout=self.config.gateway_connect_timeout,
            munge_socket=self.environ.get(MUNGE_SOCKET_ENV) or None,
            on_reply=self.print_reply if self.verbose else None,
            environ=self.environ,
        )

    @property
    def tty(self) -> bool:
        """Whether output goes to a terminal (status lines are then rewritten in place)."""
        isatty = getattr(self.out, "isatty", None)
        return bool(isatty and isatty())

    def print_reply(self, gateway: str, reply: Reply) -> None:
        """`-v`: each reply as the original printed it (non-200 replies too, on stdout)."""
        from shifter.cli.shifterimg_format import message_block, raw_message_block

        if (reply.status, reply.body) == self._last_reply:
            return
        self._last_reply = (reply.status, reply.body)
        self.replies_printed += 1
        if reply.status != 200:
            self.out.write(f"Got response: {reply.status}\n")
        value = decode_json(reply)
        text = message_block(value) if is_json_value(value) else raw_message_block(reply.body)
        self.out.write(text + "\n")
        self.out.flush()

    def image(self, text: str, *, default_type: str | None = None) -> ImageDescriptor:
        """The image a user named, which must be one the gateway serves (docker, custom).

        Without a type in `text`, `default_type` applies, else udiRoot.conf's
        defaultImageType.
        """
        descriptor = parse_descriptor(text, default_type or self.config.default_image_type)
        if descriptor.type not in GATEWAY_TYPES:
            raise ShifterError(
                f"{descriptor.type}: images are not on the image gateway",
                hint=f"use them directly, e.g. shifter --image={descriptor}",
            )
        return descriptor
