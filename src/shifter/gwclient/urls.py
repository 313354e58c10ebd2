"""Gateway URLs, built exactly as the original client built them.

The original passed type and tag through `curl_easy_escape`: every byte but the RFC 3986
unreserved characters (`A-Z a-z 0-9 - . _ ~`) becomes `%XX` with upper-case hex, so
`ubuntu:16.04` travels as `ubuntu%3A16.04` and `org/repo:tag` as `org%2Frepo%3Atag`.
The gateway percent-decodes the path. Written out here instead of `urllib.parse.quote`,
which costs the launch path a module import for five lines of work.
"""

from __future__ import annotations

from shifter.frozen import Frozen
from shifter.gwclient.errors import GatewayError

_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
SCHEMES = {"http": 80, "https": 443}


def escape(text: str) -> str:
    """`text` percent-encoded as curl_easy_escape does (UTF-8 bytes, unreserved kept)."""
    return "".join(
        chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8")
    )


def api_path(action: str, system: str, image_type: str | None = None,
             tag: str | None = None) -> str:
    """`/api/<action>/<system>/[<type>/<tag>/]`, with the image parts escaped.

    The system name is not escaped, as in the original: udiRoot.conf only allows names
    that need no escaping.
    """
    if image_type is None or tag is None:
        return f"/api/{action}/{system}/"
    return f"/api/{action}/{system}/{escape(image_type)}/{escape(tag)}/"


class GatewayURL(Frozen):
    """One `imageGateway` base URL, split for `http.client`.

    `text` as configured (for messages), `scheme` http or https, `host` (IPv6 without
    brackets), `port` (int), `prefix`: the path the gateway is mounted under ("" or
    "/imagegw"), without a trailing '/'. (Frozen, not a named tuple: `collections`
    costs `shifterimg lookup` ~1 ms.)
    """

    text: str
    scheme: str
    host: str
    port: int
    prefix: str

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}{path}"


def parse_gateway_url(text: str) -> GatewayURL:
    """Split `http[s]://host[:port][/prefix]`; raise `GatewayError` for anything else."""
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise _bad_url(text, "it does not start with http:// or https://")
    netloc, slash, path = rest.partition("/")
    prefix = (slash + path).rstrip("/")
    if "@" in netloc:
        raise _bad_url(text, "user names and passwords do not belong in it")
    if "?" in prefix or "#" in prefix or "?" in netloc or "#" in netloc:
        raise _bad_url(text, "it has a query or fragment")
    host, port_text = _split_port(netloc, text)
    if not host:
        raise _bad_url(text, "it names no host")
    port = SCHEMES[scheme]
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise _bad_url(text, f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return GatewayURL(text=text, scheme=scheme, host=host, port=port, prefix=prefix)


def _split_port(netloc: str, text: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        host, bracket, after = netloc[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise _bad_url(text, "its IPv6 address is not closed by ']'")
        return host, after[1:] if after else None
    host, colon, port = netloc.partition(":")
    return host, port if colon else None


def _bad_url(text: str, problem: str) -> GatewayError:
    return GatewayError(
        f"image gateway URL {text!r} is not usable: {problem}",
        hint="set imageGateway in udiRoot.conf to URLs like http://imagegw:5000",
    )
