"""What `shifterimg` prints, as pure functions: status lines, `-v` messages, the images table.

Scripts parse these (Nextflow takes field 6 of the second-to-last line of `shifterimg -v
pull`; older wrappers grep the `"status": "READY"` line of its messages), so the layouts
are the original's, character for character, and tests pin them.
"""

from __future__ import annotations

import time

from shifter.gwclient.records import ImageRecord

TYPE_CHECKING = False  # `shifterimg images` and `lookup` are called in loops: no `typing`
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TextIO

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
ERASE_LINE = "\r\x1b[2K"  # carriage return, then ANSI "erase the whole line"
# The key order of the original gateway's image record (and its error reply): `-v` prints
# replies in this order, whatever order this gateway's JSON library chose.
KEY_ORDER = (
    "id", "system", "itype", "tag", "status", "userACL", "groupACL", "ENV", "ENTRY",
    "WORKDIR", "LABELS", "last_pull", "status_message", "error", "message",
)
_RANK = {key: rank for rank, key in enumerate(KEY_ORDER)}


def local_time(when: float | None = None) -> str:
    """`when` (default: now) as the original printed times: local, to the second."""
    return time.strftime(TIME_FORMAT, time.localtime(when))


def status_line(stamp: str, verb: str, image: str, status: str) -> str:
    """`2016-08-05T01:14:59 Pulling Image: docker:ubuntu:16.04, status: READY`."""
    return f"{stamp} {verb} Image: {image}, status: {status}"


def _ordered(value: object) -> object:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: _RANK.get(key, len(_RANK)))  # stable for others
        return {key: _ordered(value[key]) for key in keys}
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def message_block(value: object) -> str:
    """`Message: {` and the reply as indented JSON, one key per line, in the original's order.

    The original printed the gateway's body verbatim, and that gateway pretty-printed it with
    a two-space indent; this prints any gateway's reply the same way.
    """
    import json

    return "Message: " + json.dumps(_ordered(value), indent=2)


def raw_message_block(body: bytes) -> str:
    """A reply that is not JSON, as text."""
    return "Message: " + body.decode("utf-8", errors="replace")


class Progress:
    """Prints a pull's or an import's status lines as its replies arrive.

    - on a terminal: one line, rewritten in place (`\\r` and erase-line before each status),
      ended with a newline when the work is done, as the original;
    - with `-v`: every status on its own line (after the reply's `Message:`), and a blank
      line at the end, as the original; when `replies` (how many replies were printed so
      far) says no new reply came since the last status line and the status is the same,
      the line (and the blank line after a final status) is not repeated;
    - otherwise (a pipe, a log file): a line for each change of status only, so a long pull
      does not write two lines a second into a job's log.
    """

    def __init__(
        self,
        out: TextIO,
        verb: str,
        image: str,
        *,
        verbose: bool,
        tty: bool,
        replies: Callable[[], int] | None = None,
    ) -> None:
        self._out = out
        self._verb = verb
        self._image = image
        self._mode = "verbose" if verbose else "tty" if tty else "lines"
        self._last: str | None = None
        self._open_line = False
        self._replies = replies
        self._replies_seen: int | None = None

    def show(self, record: ImageRecord, stamp: str | None = None) -> None:
        line = status_line(stamp or local_time(), self._verb, self._image, record.status)
        done = not record.in_progress
        if self._mode == "tty":
            self._out.write(ERASE_LINE + line + ("\n" if done else ""))
            self._open_line = not done
        elif self._mode == "verbose":
            replies = None if self._replies is None else self._replies()
            if replies is None or replies != self._replies_seen or record.status != self._last:
                self._out.write(line + "\n" + ("\n" if done else ""))
            self._replies_seen = replies
        elif record.status != self._last:
            self._out.write(line + "\n")
        self._last = record.status
        self._out.flush()

    def interrupted(self) -> None:
        """End a line left open on the terminal, so the next message starts on its own."""
        if self._open_line:
            self._out.write("\n")
            self._out.flush()
            self._open_line = False


def _row_time(last_pull: float | None) -> str:
    if last_pull is None:
        return "-"
    try:
        return local_time(last_pull)
    except (OverflowError, OSError, ValueError):
        return "-"


def image_rows(records: Iterable[ImageRecord]) -> list[str]:
    """The `shifterimg images` table: one row per tag, sorted by tag bytes (strcmp).

    `%-10s %-10s %-8s %-.10s   %s %-30s` as the original: system, type, status, the id cut
    to 10 characters, the last pull in local time, the tag padded to 30 (trailing spaces
    included). An image without tags has no name to show and gets no row.
    """
    rows = []
    for record in records:
        for tag in record.tags:
            row = (
                f"{record.system or '-':<10} {record.itype or '-':<10} {record.status:<8} "
                f"{(record.id or '-')[:10]}   {_row_time(record.last_pull)} {tag:<30}"
            )
            rows.append((tag.encode("utf-8"), row))
    rows.sort(key=lambda pair: pair[0])
    return [row for _, row in rows]
