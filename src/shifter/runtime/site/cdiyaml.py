"""The subset of YAML that Container Device Interface generators write (`nvidia-ctk cdi
generate`, AMD's and Intel's tools): block mappings and block sequences (a sequence may sit
at its key's indentation, as they write it), plain, 'single'- and "double"-quoted scalars,
the empty flow collections `[]` and `{}`, flow sequences of scalars, `#` comments and a
leading `---`.

Why not a YAML library: the spec is read by `shifter` on a GPU launch, and the launch path
uses the standard library only (a YAML package costs more to import than a launch). The
reader is small on purpose: anything beyond the subset (anchors, aliases, tags, block
scalars, several documents, flow mappings with content) is a `ParseError` saying so, never
a guess. Plain scalars stay strings (CDI's fields are strings; `name: 0` is the device
"0"), except `null`/`~`/nothing, which are None.

A pure function: text in, dicts, lists and strings out, or `ParseError` with the line.
"""

from __future__ import annotations

from shifter.errors import ParseError

HINT = "write the spec as JSON (nvidia-ctk cdi generate --format=json) or in plain block YAML"
NULLS = ("", "~", "null", "Null", "NULL")
UNSUPPORTED_START = "&*!|>%@`"
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", '"': '"', "\\": "\\", "/": "/", " ": " "}


class _Line:
    __slots__ = ("indent", "number", "text")

    def __init__(self, indent: int, text: str, number: int) -> None:
        self.indent, self.text, self.number = indent, text, number


def _strip_comment(raw: str) -> str:
    """The line without a `#` comment (one at the start or after a blank, not in quotes)."""
    quote, index = "", 0
    while index < len(raw):
        char = raw[index]
        if quote == '"' and char == "\\":
            index += 2  # an escaped character, `\"` included
            continue
        if quote and char == quote:
            # `''` inside single quotes is a quote, not the end.
            if quote == "'" and raw[index + 1 : index + 2] == "'":
                index += 2
                continue
            quote = ""
        elif not quote and char in "'\"" and (index == 0 or raw[index - 1] in " \t[,:-"):
            quote = char
        elif not quote and char == "#" and (index == 0 or raw[index - 1] in " \t"):
            return raw[:index]
        index += 1
    return raw


def _is_entry(text: str) -> bool:
    return text == "-" or text.startswith("- ")


class _Reader:
    def __init__(self, lines: list[_Line], source: str) -> None:
        self.lines, self.source, self.pos = lines, source, 0

    def fail(self, number: int, message: str) -> ParseError:
        return ParseError(message, source=self.source, line=number, hint=HINT)

    def more_at(self, indent: int) -> bool:
        return self.pos < len(self.lines) and self.lines[self.pos].indent == indent

    def block(self, indent: int) -> object:
        line = self.lines[self.pos]
        if _is_entry(line.text):
            return self.sequence(indent)
        if self._split_key(line) is not None:
            return self.mapping(indent)
        self.pos += 1
        return self.scalar(line.text, line.number)

    def sequence(self, indent: int) -> list[object]:
        items: list[object] = []
        while self.more_at(indent) and _is_entry(self.lines[self.pos].text):
            line = self.lines[self.pos]
            rest = line.text[1:].lstrip(" ")
            if not rest:
                self.pos += 1
                items.append(self.nested(indent, line.number))
                continue
            # `- key: value` opens a mapping whose further keys sit under `key`.
            inner = indent + len(line.text) - len(rest)
            self.lines[self.pos] = _Line(inner, rest, line.number)
            items.append(self.block(inner))
        return items

    def mapping(self, indent: int) -> dict[str, object]:
        found: dict[str, object] = {}
        while self.more_at(indent) and not _is_entry(self.lines[self.pos].text):
            line = self.lines[self.pos]
            split = self._split_key(line)
            if split is None:
                raise self.fail(line.number, f"expected 'key: value', found {line.text!r}")
            key, rest = split
            if key in found:
                raise self.fail(line.number, f"key {key!r} appears twice")
            self.pos += 1
            if rest:
                found[key] = self.scalar(rest, line.number)
            elif self.more_at(indent) and _is_entry(self.lines[self.pos].text):
                found[key] = self.sequence(indent)  # a sequence at its key's indentation
            else:
                found[key] = self.nested(indent, line.number)
        return found

    def nested(self, indent: int, number: int) -> object:
        """The block under a line that ended with `:` or `-` (None when there is none)."""
        if self.pos < len(self.lines) and self.lines[self.pos].indent > indent:
            return self.block(self.lines[self.pos].indent)
        return None

    def _split_key(self, line: _Line) -> tuple[str, str] | None:
        text = line.text
        if text[:1] in "'\"":
            end = self._quoted_end(text, line.number)
            key, after = self.scalar(text[: end + 1], line.number), text[end + 1 :].lstrip(" ")
            if not after.startswith(":"):
                return None
            return str(key), after[1:].strip(" ")
        for index, char in enumerate(text):
            if char == ":" and (index + 1 == len(text) or text[index + 1] == " "):
                return text[:index].rstrip(" "), text[index + 1 :].strip(" ")
        return None

    def _quoted_end(self, text: str, number: int) -> int:
        quote, index = text[0], 1
        while index < len(text):
            if quote == '"' and text[index] == "\\":
                index += 2
                continue
            if text[index] == quote:
                if quote == "'" and text[index + 1 : index + 2] == "'":
                    index += 2
                    continue
                return index
            index += 1
        raise self.fail(number, f"unterminated quoted string {text!r}")

    def scalar(self, text: str, number: int) -> object:
        text = text.strip(" ")
        if text[:1] in "'\"":
            end = self._quoted_end(text, number)
            if text[end + 1 :].strip(" "):
                raise self.fail(number, f"unexpected text after the quoted string in {text!r}")
            return self._unquote(text[1:end], text[0], number)
        if text.startswith("["):
            return self._flow_sequence(text, number)
        if text == "{}":
            return {}
        if text[:1] in UNSUPPORTED_START or text.startswith("{"):
            raise self.fail(number, f"{text!r} uses YAML beyond what CDI specs need")
        return None if text in NULLS else text

    def _unquote(self, body: str, quote: str, number: int) -> str:
        if quote == "'":
            return body.replace("''", "'")
        out, index = [], 0
        while index < len(body):
            char = body[index]
            if char != "\\":
                out.append(char)
                index += 1
                continue
            code = body[index + 1 : index + 2]
            if code == "u" and len(body) >= index + 6:
                try:
                    out.append(chr(int(body[index + 2 : index + 6], 16)))
                except ValueError:
                    raise self.fail(number, f"bad \\u escape in {body!r}") from None
                index += 6
            elif code in ESCAPES:
                out.append(ESCAPES[code])
                index += 2
            else:
                raise self.fail(number, f"unsupported escape \\{code} in {body!r}")
        return "".join(out)

    def _flow_sequence(self, text: str, number: int) -> list[object]:
        if not text.endswith("]") or any(c in text[1:-1] for c in "[]{}"):
            raise self.fail(number, f"{text!r}: only flat flow sequences are supported")
        inner = text[1:-1].strip(" ")
        if not inner:
            return []
        items, start, quote = [], 0, ""
        for index, char in enumerate(inner + ","):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == ",":
                items.append(self.scalar(inner[start:index], number))
                start = index + 1
        return items


def _lines(text: str, source: str) -> list[_Line]:
    lines: list[_Line] = []
    for number, raw in enumerate(text.splitlines(), 1):
        body = _strip_comment(raw).rstrip(" \t\r")
        stripped = body.lstrip(" ")
        if not stripped:
            continue
        if stripped.startswith("\t"):
            raise ParseError("a tab in the indentation", source=source, line=number, hint=HINT)
        if stripped in ("---", "...") and body == stripped:
            if lines:
                raise ParseError("only one YAML document is supported", source=source,
                                 line=number, hint=HINT)  # fmt: skip
            continue
        lines.append(_Line(len(body) - len(stripped), stripped, number))
    return lines


def parse_yaml_subset(text: str, source: str) -> object:
    """The document in `text` (see the module docstring); `source` names it in messages."""
    lines = _lines(text, source)
    if not lines:
        return None
    reader = _Reader(lines, source)
    document = reader.block(lines[0].indent)
    if reader.pos < len(lines):
        line = lines[reader.pos]
        raise reader.fail(line.number, f"unexpected indentation at {line.text!r}")
    return document
