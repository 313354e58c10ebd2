"""The shared key/value line reader: comments, delimiters, continuations, every message."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ParseError
from shifter.keyvalue import Entry, iter_entries, read_entries

pytestmark = pytest.mark.unit


def entries(text: str, delimiter: str = "=") -> list[tuple[str, str, int]]:
    found = read_entries(text, delimiter=delimiter, source="f.conf")
    return [(e.key, e.value, e.line) for e in found]


def parse_error(text: str, delimiter: str = "=") -> ParseError:
    with pytest.raises(ParseError) as caught:
        read_entries(text, delimiter=delimiter, source="f.conf")
    return caught.value


def test_key_and_value_are_trimmed_and_lines_counted() -> None:
    text = "# comment\n\n  udiMount =  /var/udiMount  \nimagePath=/images\n"
    assert entries(text) == [("udiMount", "/var/udiMount", 3), ("imagePath", "/images", 4)]


def test_only_the_first_delimiter_splits() -> None:
    assert entries("siteEnv=A=B=C") == [("siteEnv", "A=B=C", 1)]
    assert entries("ENV: PATH=/a:/b", ":") == [("ENV", "PATH=/a:/b", 1)]


def test_meta_style_colon_delimiter() -> None:
    text = "FORMAT: squashfs\nENTRY: ['/bin/sh', '-c']\nUSERACL: 1000,2000\n"
    assert entries(text, ":") == [
        ("FORMAT", "squashfs", 1),
        ("ENTRY", "['/bin/sh', '-c']", 2),
        ("USERACL", "1000,2000", 3),
    ]


def test_empty_value_is_kept_empty() -> None:
    assert entries("nodeContextPrefix=") == [("nodeContextPrefix", "", 1)]


def test_continuation_joins_trimmed_pieces_with_one_space() -> None:
    # The original's own test case (notes 1.17, item 142).
    text = "first: abcdefg   \\\n  qed \\\n feg\nsecond: x\n"
    assert entries(text, ":") == [("first", "abcdefg qed feg", 1), ("second", "x", 4)]


def test_continuation_line_is_data_even_if_it_starts_with_hash() -> None:
    assert entries("a=1 \\\n#2\nb=3") == [("a", "1 #2", 1), ("b", "3", 3)]


def test_empty_continuation_pieces_add_no_spaces() -> None:
    assert entries("a=x\\\n\\\n   \ny=1") == [("a", "x", 1), ("y", "1", 4)]


def test_indented_hash_is_not_a_comment() -> None:
    assert entries("  #key=value") == [("#key", "value", 1)]


def test_windows_line_endings_are_trimmed() -> None:
    assert entries("a=1\r\nb=2\r\n") == [("a", "1", 1), ("b", "2", 2)]


def test_line_without_delimiter_is_an_error_with_file_and_line() -> None:
    error = parse_error("a=1\n\nudiMount /var/udiMount\n")
    assert str(error) == "f.conf:3: expected 'key=value', got 'udiMount /var/udiMount'"
    assert error.hint == "write the key, '=', then the value; start comments with '#'"
    assert (error.source, error.line) == ("f.conf", 3)


def test_empty_key_is_an_error() -> None:
    assert str(parse_error("=value")) == "f.conf:1: no key before '=' in '=value'"


def test_continuation_past_end_of_file_reports_the_entry_line() -> None:
    # The same with or without the file's final newline.
    for text in ("a=1\nb=2 \\\n  3 \\", "a=1\nb=2 \\\n  3 \\\n"):
        error = parse_error(text)
        assert str(error) == "f.conf:2: the value of 'b' ends with '\\' but the file ends there"


def test_iteration_is_lazy_errors_come_when_reached() -> None:
    found = iter_entries("a=1\nbroken\n", delimiter="=", source="f.conf")
    assert next(found) == Entry("a", "1", 1)
    with pytest.raises(ParseError, match=r"f\.conf:2"):
        next(found)


@pytest.mark.parametrize("delimiter", ["", "==", " ", "#", "\\"])
def test_unusable_delimiters_are_refused(delimiter: str) -> None:
    with pytest.raises(ValueError, match="unusable delimiter"):
        read_entries("a=b", delimiter=delimiter, source="f")


# --- properties -----------------------------------------------------------------------------

KEY_CHARS = st.characters(codec="ascii", categories=("L", "N"), include_characters="_.-")
KEYS = st.text(KEY_CHARS, min_size=1, max_size=12)
# Values: printable, no newline or backslash; may contain the delimiters and '#'.
VALUE_CHARS = st.characters(
    codec="ascii", min_codepoint=32, max_codepoint=126, exclude_characters="\\"
)
WORDS = st.text(VALUE_CHARS, max_size=10).map(lambda s: s.strip()).filter(bool)


@st.composite
def documents(draw: st.DrawFn, delimiter: str) -> tuple[str, list[tuple[str, str, int]]]:
    """A file text and the entries it must yield: comments, blank lines, continuations."""
    lines: list[str] = []
    expected: list[tuple[str, str, int]] = []
    for key, pieces in draw(st.lists(st.tuples(KEYS, st.lists(WORDS, max_size=4)), max_size=8)):
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "   ", "# a comment", "#x=y"])))
        start = len(lines) + 1
        pad = draw(st.sampled_from(["", " ", "\t"]))
        first, *rest = pieces or [""]
        lines.append(f"{pad}{key}{pad}{delimiter}{pad}{first}")
        for piece in rest:
            lines[-1] += pad + "\\"
            lines.append(f"{pad}{piece}{pad}")
        expected.append((key, " ".join(p for p in pieces if p), start))
    return "\n".join(lines), expected


@given(st.data())
def test_reader_recovers_every_entry_equals(data: st.DataObject) -> None:
    text, expected = data.draw(documents("="))
    assert entries(text, "=") == expected


@given(st.data())
def test_reader_recovers_every_entry_colon(data: st.DataObject) -> None:
    text, expected = data.draw(documents(":"))
    assert entries(text, ":") == expected


@given(KEYS, WORDS)
def test_value_keeps_later_delimiters(key: str, value: str) -> None:
    assert entries(f"{key}={value}=tail") == [(key, f"{value}=tail", 1)]
