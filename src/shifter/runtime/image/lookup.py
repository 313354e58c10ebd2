"""Resolving `docker:` and `custom:` images to an id: a lookup at the image gateway.

The original ran `shifterimg lookup` through popen; this asks the gateway in-process
(`shifter.gwclient`: a minimal HTTP/1.1 exchange on a socket for a plain http:// gateway,
`http.client` for https and proxies), with the caller's munge credential.
Only launches that need a lookup import the client's HTTP and munge code.
"""

from __future__ import annotations

from shifter.image.descriptor import ImageDescriptor
from shifter.runtime.config.load import UdiRootConfig

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping


def gateway_lookup(
    descriptor: ImageDescriptor, config: UdiRootConfig, environ: Mapping[str, str]
) -> str:
    """The id of the READY image `descriptor` names, as the gateway knows it."""
    from shifter.gwclient import MUNGE_SOCKET_ENV, GatewayClient

    client = GatewayClient(
        config.require_image_gateways(),
        config.require_system(),
        timeout=config.gateway_timeout,
        connect_timeout=config.gateway_connect_timeout,
        munge_socket=environ.get(MUNGE_SOCKET_ENV) or None,
        environ=environ,
    )
    record = client.lookup(str(descriptor.type), descriptor.spec)
    return str(record.id)
