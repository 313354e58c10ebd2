"""`GatewayClient`: the image gateway's REST API as Python calls, with failover.

Every request goes to the configured gateways in order (the original shuffled them; a fixed
order makes failures reproducible and lets a site put the nearest gateway first) until one
answers 200 with JSON; any other answer, a refused connection, no answer within
`gatewayConnectTimeout` or no whole reply within `gatewayTimeout` moves on to the next. The
gateway that answered is asked first next time, so the polls of one pull stay with the
gateway that has its record; one that did not answer is tried last for a minute, by this
user's later calls too (downlist.py). Each request carries a fresh munge credential
(the gateway refuses a replayed one): an empty payload, or for pulls the user's registry
logins as `{"authorized_locations": {...}}`.

Cheap to import (the `shifter` launch path resolves images with `lookup`): json, http.client,
ssl and libmunge load on the first request.
"""

from __future__ import annotations

import os
import sys
import time

from shifter import __version__
from shifter.frozen import Frozen
from shifter.gwclient.downlist import DownList, memory_path
from shifter.gwclient.errors import (
    Attempt,
    GatewayAuthError,
    GatewayError,
    GatewayForbiddenError,
    GatewayReplyError,
    GatewayRequestError,
    GatewayUnavailableError,
    ImageNotFoundError,
    ImageOperationError,
    NotAdminError,
)
from shifter.gwclient.records import ImageRecord, parse_list, parse_record
from shifter.gwclient.transport import Reply, TransportError, exchange
from shifter.gwclient.urls import GatewayURL, api_path, parse_gateway_url

TYPE_CHECKING = False  # `collections` costs `shifterimg lookup` ~1 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shifter.munge.libmunge import Munge

# gatewayConnectTimeout's default: a gateway answers every request at once, so one that
# has not connected or started its reply by then is taken as down (downlist.py).
DEFAULT_CONNECT_TIMEOUT_S = 5
POLL_INTERVAL_S = 0.5  # the original re-POSTed every 0.5 s; the gateway expects no faster
# How long a pull whose first reply is an earlier pull's FAILURE waits for the gateway to
# start it again (ours holds a failure 10 s by default; the original held it 300 s).
STALE_FAILURE_WAIT_S = 15.0
FAILURE = "FAILURE"
USER_AGENT = f"shifter-gwclient/{__version__}"
# Replies up to this size are read without the `json` module (smalljson.py): a lookup's is
# a few hundred bytes; a long image list is read faster by json's C scanner.
SMALL_REPLY_BYTES = 64 * 1024

# Called with the gateway URL and every reply, 200 or not (`shifterimg -v` prints them).
if TYPE_CHECKING:
    ReplyHook = Callable[[str, Reply], None]
    StatusHook = Callable[[ImageRecord], None]


class Acl(Frozen):
    """Who may use a private image: `users` (uids) and `groups` (gids), tuples of ints.

    The gateway adds the caller's own uid and gid to a non-empty list.
    """

    users: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()

    def body(self) -> dict[str, str]:
        """The pull body's fields: comma-separated decimal strings, as the API wants them."""
        fields = {}
        if self.users:
            fields["allowed_uids"] = ",".join(str(uid) for uid in self.users)
        if self.groups:
            fields["allowed_gids"] = ",".join(str(gid) for gid in self.groups)
        return fields


class GatewayClient:
    """Requests to the image gateways of one system (platform)."""

    def __init__(
        self,
        gateways: Sequence[str],
        system: str,
        *,
        timeout: float | None = 60,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT_S,
        munge_socket: str | None = None,
        on_reply: ReplyHook | None = None,
        environ: Mapping[str, str] = os.environ,
        down: DownList | None = None,
    ) -> None:
        if not gateways:
            raise GatewayError(
                "no image gateway is configured",
                hint="set imageGateway in udiRoot.conf, e.g. imageGateway=http://imagegw:5000",
            )
        self.gateways: tuple[GatewayURL, ...] = tuple(parse_gateway_url(g) for g in gateways)
        self.system = system
        self.timeout = timeout or None  # gatewayTimeout=0 means no limit, as in the original
        self.connect_timeout = connect_timeout or None
        self.on_reply = on_reply
        self._munge_socket = munge_socket
        self._munge: Munge | None = None
        self._environ = environ
        self._preferred = 0
        # Gateways that did not answer lately (this user's other calls too) come last.
        self._down = down
        if down is None and len(self.gateways) > 1:
            path = memory_path(environ)
            self._down = DownList(path) if path else None
        self._marked: dict[str, float] = {}

    # -- the API ------------------------------------------------------------------------

    def lookup(self, image_type: str, tag: str) -> ImageRecord:
        """The READY image `type:tag` this user may read; `ImageNotFoundError` if none."""
        data = self._request("GET", api_path("lookup", self.system, image_type, tag),
                             what=f"lookup of {image_type}:{tag}", image=f"{image_type}:{tag}")
        record = parse_record(data, where="the gateway's lookup reply")
        if record.id is None:
            raise GatewayReplyError(f"the gateway's lookup reply for {image_type}:{tag} has no id")
        return record

    def pull(
        self,
        image_type: str,
        tag: str,
        *,
        acl: Acl | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> ImageRecord:
        """Ask for a pull once; the record says how far it is (re-ask to poll).

        `credentials` maps registry locations (or "default") to "user:password"; they travel
        inside the munge credential, so only the gateway can read them.
        """
        payload = b""
        if credentials:
            payload = _json_bytes({"authorized_locations": dict(credentials)})
        fields = acl.body() if acl is not None else {}
        data = self._request(
            "POST", api_path("pull", self.system, image_type, tag),
            body=_json_bytes(fields) if fields else b"", payload=payload,
            what=f"pull of {image_type}:{tag}",
        )
        return parse_record(data, where="the gateway's pull reply")

    def pull_and_wait(
        self,
        image_type: str,
        tag: str,
        *,
        acl: Acl | None = None,
        credentials: Mapping[str, str] | None = None,
        on_status: StatusHook | None = None,
        interval: float = POLL_INTERVAL_S,
    ) -> ImageRecord:
        """Pull and re-ask every `interval` s until READY; `ImageOperationError` otherwise."""
        return self._wait(
            lambda: self.pull(image_type, tag, acl=acl, credentials=credentials),
            f"pull {image_type}:{tag}", on_status, interval,
        )

    def doimport(self, image_type: str, tag: str, filepath: str, fmt: str) -> ImageRecord:
        """Ask once to import the image file at `filepath` (a path the gateway can read)."""
        data = self._request(
            "POST", api_path("doimport", self.system, image_type, tag),
            body=_json_bytes({"filepath": filepath, "format": fmt}),
            what=f"import of {image_type}:{tag}",
        )
        return parse_record(data, where="the gateway's import reply")

    def import_and_wait(
        self,
        image_type: str,
        tag: str,
        filepath: str,
        fmt: str,
        *,
        on_status: StatusHook | None = None,
        interval: float = POLL_INTERVAL_S,
    ) -> ImageRecord:
        """Import and re-ask every `interval` s until READY; `ImageOperationError` otherwise."""
        return self._wait(
            lambda: self.doimport(image_type, tag, filepath, fmt),
            f"import {image_type}:{tag}", on_status, interval,
        )

    def images(self) -> list[ImageRecord]:
        """Every READY image of this system the user may read."""
        data = self._request("GET", api_path("list", self.system), what="image list")
        return parse_list(data, where="the gateway's list reply")

    def expire(self, image_type: str, tag: str) -> None:
        """Remove `type:tag` from the system (gateway admins only)."""
        data = self._request("GET", api_path("expire", self.system, image_type, tag),
                             what=f"expire of {image_type}:{tag}")
        status = _status_field(data, "expire")
        if status is None:
            raise ImageOperationError(
                f"the gateway has no image {image_type}:{tag} to expire",
                hint="`shifterimg images` lists the images of this system",
            )
        if status is not True:
            raise _not_admin("expire images")

    def autoexpire(self) -> list[str]:
        """Expire images not looked up for the gateway's expiry time; the ids queued."""
        data = self._request("GET", api_path("autoexpire", self.system), what="autoexpire")
        status = _status_field(data, "autoexpire")
        if not isinstance(status, list):
            raise _not_admin("run autoexpire")
        return [item for item in status if isinstance(item, str)]

    # -- the machinery ------------------------------------------------------------------

    def _wait(
        self, ask: Callable[[], ImageRecord], doing: str, on_status: StatusHook | None,
        interval: float,
    ) -> ImageRecord:
        record = ask()
        # A new pull's first reply is INIT; FAILURE first is an earlier pull's failure, which
        # the gateway holds for a while before it tries again (after a `shifterimg login`,
        # say). Keep asking for a bounded time rather than report that old failure as ours.
        stale_until = (time.monotonic() + STALE_FAILURE_WAIT_S
                       if record.status == FAILURE else None)
        while True:
            if on_status is not None:
                on_status(record)
            if record.status != FAILURE:
                stale_until = None
            if not record.in_progress and (
                stale_until is None or time.monotonic() >= stale_until
            ):
                break
            time.sleep(interval)
            record = ask()
        if not record.ready:
            detail = record.status
            if record.status_message and record.status_message != record.status:
                detail += f" ({record.status_message})"
            raise ImageOperationError(f"the gateway could not {doing}: {detail}",
                                      hint=failure_hint(record.status_message or ""))
        return record

    def _credential(self, payload: bytes) -> str:
        if self._munge is None:
            from shifter.munge.libmunge import Munge

            self._munge = Munge(self._munge_socket)
        return self._munge.encode(payload)

    def _order(self) -> list[int]:
        count = len(self.gateways)
        order = [(self._preferred + step) % count for step in range(count)]
        if self._down is None:
            return order
        self._marked = self._down.down()
        return sorted(order, key=lambda index: self.gateways[index].text in self._marked)

    def _request(
        self, method: str, path: str, *, what: str, body: bytes | None = None,
        payload: bytes = b"", image: str | None = None,
    ) -> object:
        attempts: list[Attempt] = []
        for index in self._order():
            gateway = self.gateways[index]
            headers = {
                "authentication": self._credential(payload),
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
                "Connection": "close",
            }
            if body is not None:
                headers["Content-Type"] = "application/json"
            started = time.monotonic()
            try:
                reply = exchange(gateway, method, path, headers=headers, body=body,
                                 timeout=self.timeout, answer_timeout=self.connect_timeout,
                                 environ=self._environ)
            except TransportError as exc:
                _debug("%s %s: %s", method, gateway.url(path), exc.problem)
                attempts.append(Attempt(gateway.text, exc.problem))
                if exc.unreachable and self._down is not None and len(self.gateways) > 1:
                    self._down.mark(gateway.text)
                continue
            if gateway.text in self._marked and self._down is not None:
                self._down.clear(gateway.text)
                del self._marked[gateway.text]
            _debug("%s %s -> %d (%d bytes) in %.3f s", method, gateway.url(path),
                   reply.status, len(reply.body), time.monotonic() - started)
            if self.on_reply is not None:
                self.on_reply(gateway.text, reply)
            data = decode_json(reply)
            if reply.status != 200:
                error = _error_text(data)
                problem = f"HTTP {reply.status}" + (f": {error}" if error else "")
                attempts.append(Attempt(gateway.text, problem, reply.status, error))
                continue
            if data is _UNDECODABLE:
                attempts.append(Attempt(gateway.text, f"200 without a JSON body "
                                        f"(Content-Type {reply.media_type or 'none'})", 200))
                continue
            self._preferred = index
            return data
        raise _failure(what, attempts, self.system, image)


_UNDECODABLE = object()
# What a failed pull's status_message says -> what to do about it.
_FAILURE_HINTS = (
    (("No space left", "is full"), "the image gateway is out of disk space: its admins must "
     "free some; then pull again"),
    (("cannot connect", "connection refused", "timed out", "Temporary failure in name",
      "Name or service not known", "registry answered 5", "502", "503", "504"),
     "the registry could not be reached or failed: try again later; if it goes on, tell "
     "the site's shifter administrators"),
    (("examiner",), "the site's examiner refused the image: ask the site's shifter "
     "administrators why"),
    (("may not be imported", "squashfs"), "rebuild the image file as the message says, then "
     "import it again"),
    (("access denied", "UNAUTHORIZED", "DENIED", "login", "credentials"),
     "for a private registry, `shifterimg login LOCATION` first, then pull again"),
    (("not found", "MANIFEST_UNKNOWN", "NAME_UNKNOWN"), "check the image name and tag (and, "
     "for a private registry, `shifterimg login`)"),
)


def _debug(message: str, *args: object) -> None:
    # `logging` costs the launch path milliseconds to import; when nobody imported it,
    # nobody configured it, and there is no one to log to.
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(message, *args)


def failure_hint(message: str) -> str:
    """The next step for a failed pull or import, from the gateway's reason."""
    lowered = message.lower()
    for needles, hint in _FAILURE_HINTS:
        if any(needle.lower() in lowered for needle in needles):
            return hint
    return "the gateway's log says more; it tries a failed image again after a while"


def decode_json(reply: Reply) -> object:
    """The reply's JSON value, or a sentinel when it has none (wrong type, bad text).

    A short reply (a lookup's, a pull's) is read by `smalljson`, which spares the launch
    `json`'s import; a long one, or one it refuses, by `json`."""
    if not reply.is_json:
        return _UNDECODABLE
    if len(reply.body) <= SMALL_REPLY_BYTES:
        from shifter.gwclient.smalljson import loads

        try:
            return loads(reply.body.decode("utf-8"))
        except ValueError:
            pass  # not UTF-8, not strict JSON, or too deep: json.loads decides
    import json

    try:
        return json.loads(reply.body)
    except ValueError:
        return _UNDECODABLE


def is_json_value(value: object) -> bool:
    return value is not _UNDECODABLE


def _json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _error_text(data: object) -> str | None:
    """The gateway's own words: the original sent `error`, FastAPI sends `detail`."""
    if not isinstance(data, dict):
        return None
    for key in ("error", "detail", "message"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _status_field(data: object, what: str) -> object:
    if not isinstance(data, dict) or "status" not in data:
        raise GatewayReplyError(f"the gateway's {what} reply has no \"status\" field")
    return data["status"]


def _not_admin(doing: str) -> NotAdminError:
    return NotAdminError(
        f"the image gateway lets only its admins {doing}",
        hint="ask the site's shifter administrators (the gateway's `admins` list)",
    )


def _failure(
    what: str, attempts: list[Attempt], system: str, image: str | None
) -> GatewayUnavailableError:
    statuses = {attempt.status for attempt in attempts if attempt.status is not None}
    forbidden = next((a for a in attempts if a.status == 403), None)
    if forbidden is not None:
        # The gateway's reason (and its hint) says it all; one gateway's word is enough.
        return GatewayForbiddenError(
            f"the image gateway refused the {what}: {forbidden.error or 'forbidden'}",
            attempts, details=False,
        )
    if 401 in statuses:
        return GatewayAuthError(
            f"the image gateway refused the {what}", attempts,
            hint="check that munged runs here with the gateway's key (SHIFTER_MUNGE_SOCKET "
            f"selects its socket) and that system={system} is a platform of the gateway",
        )
    rejected = next((a for a in attempts if a.status is not None and 400 <= a.status < 500
                     and a.status not in (401, 403, 404)), None)
    if rejected is not None:
        # A precise answer about the request itself, in the gateway's words: the gateway
        # is running, and another would say the same. Most often this site's `system` is
        # not one of its platforms (NERSC/shifter#249), or a registry it does not list.
        unknown_system = "Platforms" in (rejected.error or "")
        return GatewayRequestError(
            f"the image gateway rejected the {what}: {rejected.error or rejected.problem}",
            attempts, details=False,
            hint=f"udiRoot.conf (system={system}) and the gateway's configuration disagree: "
            "tell the site's shifter administrators" if unknown_system else None,
        )
    if image is not None and 404 in statuses:
        return ImageNotFoundError(
            f"image {image} is not on the image gateway, or you may not use it", attempts,
            hint=f"pull it first: shifterimg pull {image}",
        )
    return GatewayUnavailableError(
        f"the {what} failed on every image gateway", attempts,
        hint="check imageGateway in udiRoot.conf and that the gateway is running",
    )
