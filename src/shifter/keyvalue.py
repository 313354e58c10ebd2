"""The line reader shared by udiRoot.conf (`key=value`) and an image's `.meta` (`KEY: value`).

Grammar, one logical entry per line:

- a line whose first character is `#` is a comment (an indented `#` is not: the original
  treats it as data, and so do we);
- a blank line (only whitespace) is skipped;
- otherwise the key is everything before the first delimiter and the value everything after
  it, both trimmed; only the first delimiter splits, so `ENV: PATH=/a:/b` keeps its colons;
- a value whose last character is a backslash continues on the next physical line, whatever
  that line holds; the backslash is dropped, every piece is trimmed, and the non-empty pieces
  are joined with one space (`a \\` + `  b` gives `a b`).

Unlike the original, a non-blank, non-comment line without the delimiter is an error rather
than silently ignored: a site admin who typed `udiMount /var/udiMount` should hear about it.
Errors and entries report the line where the entry starts.
"""

from __future__ import annotations

from shifter.errors import ParseError
from shifter.frozen import Frozen

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Iterator

# C's isspace() set: what the original trims. str.strip() with no argument would also eat
# Unicode spaces, which the original keeps.
WHITESPACE = " \t\n\r\v\f"
CONTINUATION = "\\"


# Frozen, not a dataclass or typing.NamedTuple: both cost the launch path milliseconds.
class Entry(Frozen):
    """One `key`/`value` pair and the 1-based line where it starts."""

    key: str
    value: str
    line: int


def _split_value(raw: str) -> tuple[str, bool]:
    """The trimmed piece of a value and whether it continues on the next line."""
    piece = raw.strip(WHITESPACE)
    if piece.endswith(CONTINUATION):
        return piece[: -len(CONTINUATION)].strip(WHITESPACE), True
    return piece, False


def iter_entries(text: str, *, delimiter: str, source: str) -> Iterator[Entry]:
    """Yield the entries of `text`, raising `ParseError` naming `source` and the line."""
    if len(delimiter) != 1 or delimiter in WHITESPACE or delimiter in "#\\":
        raise ValueError(f"unusable delimiter {delimiter!r}")
    # Split on "\n" only: str.splitlines() would also break on \v, \f and Unicode separators,
    # which would shift line numbers away from what an editor shows.
    lines = text.split("\n")
    if lines[-1] == "":
        # The file's final newline ends its last line; it does not start another, which a
        # trailing backslash would otherwise continue into (with or without it: an error).
        lines.pop()
    index = 0
    while index < len(lines):
        start = index + 1
        line = lines[index]
        index += 1
        if line.startswith("#") or not line.strip(WHITESPACE):
            continue
        key, found, rest = line.partition(delimiter)
        key = key.strip(WHITESPACE)
        if not found:
            raise ParseError(
                f"expected 'key{delimiter}value', got {line.strip(WHITESPACE)!r}",
                source=source,
                line=start,
                hint=f"write the key, '{delimiter}', then the value; start comments with '#'",
            )
        if not key:
            raise ParseError(
                f"no key before '{delimiter}' in {line.strip(WHITESPACE)!r}",
                source=source,
                line=start,
            )
        piece, continues = _split_value(rest)
        pieces = [piece]
        while continues:
            if index >= len(lines):
                raise ParseError(
                    f"the value of {key!r} ends with '\\' but the file ends there",
                    source=source,
                    line=start,
                    hint="remove the trailing backslash or add the continuation line",
                )
            piece, continues = _split_value(lines[index])
            index += 1
            pieces.append(piece)
        yield Entry(key, " ".join(p for p in pieces if p), start)


def read_entries(text: str, *, delimiter: str, source: str) -> list[Entry]:
    """All entries of `text` at once (the whole text is checked before anything is used)."""
    return list(iter_entries(text, delimiter=delimiter, source=source))
