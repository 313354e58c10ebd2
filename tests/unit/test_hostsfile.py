"""The `setupRoot -N` node list and the hostsfile it becomes (spec item 189)."""

from __future__ import annotations

import pytest

from shifter.errors import ParseError
from shifter.runtime.rootfs.hostsfile import hostsfile_text, parse_nodespec


def test_each_host_is_repeated_count_times_in_order() -> None:
    entries = parse_nodespec("host1/24 host2/24  host3/24")
    assert entries == (("host1", 24), ("host2", 24), ("host3", 24))
    lines = hostsfile_text(entries).splitlines()
    assert len(lines) == 72
    assert lines[0] == "host1" and lines[24] == "host2" and lines[-1] == "host3"


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("host1", "has no '/COUNT'"),
        ("host1/0", "the count must be a number"),
        ("host1/x", "the count must be a number"),
        ("host1/-2", "the count must be a number"),
        ("/4", "an empty or overlong host name"),
        ("a;b/4", "characters a host name cannot have"),
        ("-n1/4", "characters a host name cannot have"),
        ("   ", "the node list is empty"),
    ],
)
def test_bad_node_lists_are_refused(text: str, phrase: str) -> None:
    with pytest.raises(ParseError, match=phrase) as raised:
        parse_nodespec(text)
    assert str(raised.value).startswith("-N: ")
