"""`shifter.gwclient.smalljson` reads what `json.loads` reads, the same way: random values
written by `json.dumps` in every style, hand-picked edge cases, and random texts, which
must be refused by both or read alike."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shifter.gwclient.smalljson import loads

pytestmark = pytest.mark.unit

SCALARS = (
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False)
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=400)
@given(VALUES, st.booleans(), st.sampled_from([None, 0, 2]))
def test_reads_what_json_writes(value: object, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert loads(text) == json.loads(text)


@settings(max_examples=400)
@given(st.text(alphabet='{}[]",:.-+eE0123456789 \\u/tfnrl\x01aéd\t', max_size=30))
def test_random_texts_are_refused_or_read_as_json_reads_them(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        expected = ValueError
    try:
        found = loads(text)
    except ValueError:
        found = ValueError
    if expected is ValueError or found is ValueError:
        # json takes NaN and Infinity, which this reader leaves to it (the client falls
        # back to json.loads whenever this reader refuses).
        assert found is ValueError, text
    else:
        assert found == expected or (
            isinstance(found, float) and isinstance(expected, float)
            and math.isnan(found) and math.isnan(expected)
        ), text  # fmt: skip


@pytest.mark.parametrize(
    "text",
    ['{"a": 1, "a": 2}', '"\\ud83d\\ude00"', '"\\ud83d"', '"\\ud83dx"', '"\\u00e9\\/\\b"',
     "-0", "1E400", "-1.5e-3", " [ ] ", "{}", '[1, [2, [3, {"b": null}]]]', '"caf\u00e9"',
     "12345678901234567890123"],
)  # fmt: skip
def test_edge_cases(text: str) -> None:
    assert loads(text) == json.loads(text)


@pytest.mark.parametrize(
    "text",
    ["", "01", "1.", ".5", "+1", "1e", "[1,]", '{"a":1,}', '{"a" 1}', '"a\tb"', '"\\x"',
     "nul", "[", '"abc', "1 2", "NaN", "Infinity", "[" * 200 + "]" * 200],
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)
