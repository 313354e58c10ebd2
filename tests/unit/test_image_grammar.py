"""The image grammar's character-set checks agree with the regular expressions they replace.

`shifter.image` checks references without `re` (it is on the launch path); the patterns
here are the grammar as written in `shifter.image.reference` and `docs/image-references.md`,
used as the oracle on random text and on text generated to match them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.image import descriptor, reference

pytestmark = pytest.mark.unit

COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
HOST = (
    r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[a-fA-F0-9:]+\]"
)
ALGORITHM = r"[a-z][a-z0-9]*(?:[+._-][a-z][a-z0-9]*)*"
HEX = r"[a-f0-9]{32,}"
CUSTOM_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}"

# The grammar's characters, their neighbours in ASCII, and non-ASCII look-alikes that
# str.isalnum() or a case-insensitive match would let through (Kelvin sign, dotted I, ...).
ALPHABET = "aAbfgzZ09_.-+:/@[]__--..\\ \n~\u212a\u0130\u0131\u0663\u00b2\u00e9"
SAMPLES = st.text(alphabet=ALPHABET, max_size=40)

# Each check, its pattern, and the few characters that decide it (plus one that never fits).
PREDICATES = [
    (COMPONENT, reference._is_component, "ab9._-A"),
    (TAG, reference.is_tag, "aZ9_.-:"),
    (HOST, reference._is_host, "aZ9-.[]:fF"),
    (ALGORITHM, reference._is_algorithm, "az9+._-A"),
    (HEX, reference._is_hex, "af09g"),
    (CUSTOM_NAME, descriptor._is_custom_name, "aZ9_.+-:"),
]
IDS = ["component", "tag", "host", "algorithm", "hex", "custom-name"]


@pytest.mark.parametrize(("pattern", "predicate", "close"), PREDICATES, ids=IDS)
@given(data=st.data())
def test_checks_agree_with_the_grammar_on_random_text(
    pattern: str, predicate: Callable[[str], bool], close: str, data: st.DataObject
) -> None:
    text = data.draw(SAMPLES | st.text(alphabet=close, max_size=40))
    assert predicate(text) == bool(re.fullmatch(pattern, text)), text


@pytest.mark.parametrize(("pattern", "predicate", "close"), PREDICATES, ids=IDS)
@given(data=st.data())
def test_checks_accept_what_the_grammar_generates(
    pattern: str, predicate: Callable[[str], bool], close: str, data: st.DataObject
) -> None:
    text = data.draw(st.from_regex(re.compile(pattern), fullmatch=True))
    assert predicate(text), text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 128, True),
        ("a" * 129, False),
        ("_x", True),
        (".x", False),
        ("-x", False),
    ],
)
def test_tag_edges(text: str, expected: bool) -> None:
    assert reference.is_tag(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a__b", True), ("a___b", False), ("a---b", True), ("a-_b", False), ("a._b", False)],
)
def test_component_separators(text: str, expected: bool) -> None:
    assert reference._is_component(text) is expected


CHARSETS = [
    (r"[A-Za-z0-9._:/@+\[\]-]*", reference._REFERENCE_CHARS),
    (r"[A-Za-z0-9_.+:-]*", descriptor._CUSTOM_CHARS),
    (r"[0-9a-f]*", reference.LOWER_HEX),
    (r"[A-Za-z0-9_.+@:/-]*", descriptor._LOCAL_CHARS),
]


@pytest.mark.parametrize(("pattern", "allowed"), CHARSETS, ids=["docker", "custom", "hex", "local"])
@given(text=SAMPLES, start=st.integers(min_value=0, max_value=45))
def test_first_disallowed_names_the_character_the_pattern_stops_at(
    pattern: str, allowed: frozenset[str], text: str, start: int
) -> None:
    matched = re.compile(pattern).match(text, start)
    stop = matched.end() if matched else start
    expected = None
    if stop < len(text):
        expected = f"character {text[stop]!r} at position {stop + 1} is not allowed"
    assert reference.first_disallowed(text, allowed, start) == expected
