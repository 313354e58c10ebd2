"""The hostsfile of a job's container (`setupRoot -N`, spec item 189): the batch system's
node list as `host/count` entries separated by spaces, written to `/var/hostsfile` with each
host repeated `count` times, one per line, in order (the layout MPI launchers and sshd-based
workflows read).

Pure functions: text in, a frozen value or `ParseError` out.
"""

from __future__ import annotations

from shifter.errors import ParseError

HOSTSFILE = "var/hostsfile"
HINT = 'expected "HOST/COUNT HOST/COUNT ...", e.g. -N "n1/4 n2/4"'
MAX_COUNT = 1 << 16  # tasks per node; far above any real node, bounds the file's size
MAX_HOST = 255  # a DNS name's length limit


def _host_problem(host: str) -> str | None:
    if not host or len(host) > MAX_HOST:
        return "an empty or overlong host name"
    if host.startswith("-") or not all(c.isalnum() or c in "-._" for c in host):
        return f"host name {host!r} has characters a host name cannot have"
    return None


def parse_nodespec(text: str, *, source: str = "-N") -> tuple[tuple[str, int], ...]:
    """`(host, count)` pairs of a `-N` value; at least one, each count at least 1."""
    entries: list[tuple[str, int]] = []
    for word in text.split():
        host, slash, count = word.rpartition("/")
        if not slash:
            raise ParseError(f"{word!r} has no '/COUNT'", source=source, hint=HINT)
        problem = _host_problem(host)
        if problem is not None:
            raise ParseError(f"{word!r}: {problem}", source=source, hint=HINT)
        if not count.isdigit() or not 0 < int(count) <= MAX_COUNT:
            raise ParseError(
                f"{word!r}: the count must be a number from 1 to {MAX_COUNT}",
                source=source,
                hint=HINT,
            )
        entries.append((host, int(count)))
    if not entries:
        raise ParseError("the node list is empty", source=source, hint=HINT)
    return tuple(entries)


def hostsfile_text(entries: tuple[tuple[str, int], ...]) -> str:
    """Each host `count` times, one per line."""
    return "".join(f"{host}\n" * count for host, count in entries)
