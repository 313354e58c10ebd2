"""A small JSON reader for the gateway's short replies, without the `json` module.

`json` imports `re` and compiles its scanner's patterns: ~2.5 ms of a `docker:` launch's
lookup and of `shifterimg lookup`, whose whole reply is a few hundred bytes. `loads` reads
RFC 8259 JSON text (objects, arrays, strings with every escape, numbers, true, false,
null; a repeated member name keeps its last value, as `json.loads`) and raises
`ValueError` on anything else. The client falls back to `json.loads` for long replies and
whenever this reader refuses a text, so a text `json` accepts (NaN, say) still decodes.
"""

from __future__ import annotations

WHITESPACE = " \t\n\r"
ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
DIGITS = "0123456789"
NUMBER_CHARS = frozenset("+-.eE0123456789")
MAX_DEPTH = 100  # deeper nesting is nothing a gateway sends; json.loads takes over


def loads(text: str) -> object:
    """The value of the JSON text `text`; `ValueError` when it is not JSON."""
    value, end = _value(text, _skip(text, 0), 0)
    if _skip(text, end) != len(text):
        raise ValueError(f"extra data at {end}")
    return value


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in WHITESPACE:
        at += 1
    return at


def _value(text: str, at: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    char = text[at : at + 1]
    if char == '"':
        return _string(text, at + 1)
    if char == "{":
        return _object(text, at + 1, depth + 1)
    if char == "[":
        return _array(text, at + 1, depth + 1)
    for word, value in (("true", True), ("false", False), ("null", None)):
        if text.startswith(word, at):
            return value, at + len(word)
    return _number(text, at)


def _object(text: str, at: int, depth: int) -> tuple[dict[str, object], int]:
    members: dict[str, object] = {}
    at = _skip(text, at)
    if text[at : at + 1] == "}":
        return members, at + 1
    while True:
        if text[at : at + 1] != '"':
            raise ValueError(f"expected a member name at {at}")
        name, at = _string(text, at + 1)
        at = _skip(text, at)
        if text[at : at + 1] != ":":
            raise ValueError(f"expected ':' at {at}")
        members[name], at = _value(text, _skip(text, at + 1), depth)
        done, at = _after_item(text, at, "}")
        if done:
            return members, at


def _array(text: str, at: int, depth: int) -> tuple[list[object], int]:
    items: list[object] = []
    at = _skip(text, at)
    if text[at : at + 1] == "]":
        return items, at + 1
    while True:
        item, at = _value(text, at, depth)
        items.append(item)
        done, at = _after_item(text, at, "]")
        if done:
            return items, at


def _after_item(text: str, at: int, closer: str) -> tuple[bool, int]:
    """After a member or an element: (True, the index after `closer`), or (False, the
    index of the next one, after the comma)."""
    at = _skip(text, at)
    char = text[at : at + 1]
    if char == closer:
        return True, at + 1
    if char != ",":
        raise ValueError(f"expected ',' or {closer!r} at {at}")
    return False, _skip(text, at + 1)


def _string(text: str, at: int) -> tuple[str, int]:
    """The string whose opening quote is just before `at`, and the index after its end."""
    parts = []
    while True:
        quote = text.find('"', at)
        if quote < 0:
            raise ValueError("unterminated string")
        backslash = text.find("\\", at, quote)
        end = quote if backslash < 0 else backslash
        plain = text[at:end]
        if any(char < " " for char in plain):
            raise ValueError("control character in a string")
        parts.append(plain)
        if backslash < 0:
            return "".join(parts), quote + 1
        escape = text[backslash + 1 : backslash + 2]
        if escape == "u":
            char, at = _unicode_escape(text, backslash + 2)
            parts.append(char)
        elif escape in ESCAPES:
            parts.append(ESCAPES[escape])
            at = backslash + 2
        else:
            raise ValueError(f"invalid escape at {backslash}")


def _hex4(text: str, at: int) -> int:
    digits = text[at : at + 4]
    if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
        raise ValueError(f"invalid \\u escape at {at}")
    return int(digits, 16)


def _unicode_escape(text: str, at: int) -> tuple[str, int]:
    """`\\uXXXX` (a surrogate pair joined, a lone surrogate kept, as json.loads does)."""
    code = _hex4(text, at)
    at += 4
    if 0xD800 <= code <= 0xDBFF and text.startswith("\\u", at):
        try:
            low = _hex4(text, at + 2)
        except ValueError:
            low = -1
        if 0xDC00 <= low <= 0xDFFF:
            return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)), at + 6
    return chr(code), at


def _number(text: str, at: int) -> tuple[int | float, int]:
    end = at
    while end < len(text) and text[end] in NUMBER_CHARS:
        end += 1
    word = text[at:end]
    body = word[1:] if word.startswith("-") else word
    whole, dot, rest = body.partition(".")
    if dot:
        fraction, e, exponent = rest.replace("E", "e").partition("e")
        if not fraction or not _digits(fraction):
            raise ValueError(f"invalid number at {at}")
    else:
        whole, e, exponent = whole.replace("E", "e").partition("e")
    if not _digits(whole) or (len(whole) > 1 and whole[0] == "0"):
        raise ValueError(f"invalid number at {at}")
    if e:
        digits = exponent[1:] if exponent[:1] in ("+", "-") else exponent
        if not _digits(digits):
            raise ValueError(f"invalid number at {at}")
    if dot or e:
        return float(word), end
    return int(word), end


def _digits(text: str) -> bool:
    return bool(text) and all(char in DIGITS for char in text)
