"""Reading /proc/self/status after the privilege drop: what counts as fully dropped."""

from __future__ import annotations

import pytest

from shifter.runtime.identity.privileges import expected_groups, parse_status, status_problems

pytestmark = pytest.mark.unit

DROPPED = """\
Name:\tsh
Uid:\t1002\t1002\t1002\t1002
Gid:\t1002\t1002\t1002\t1002
Groups:\t1002 65534\x20
CapInh:\t0000000000000000
CapPrm:\t0000000000000000
CapEff:\t0000000000000000
CapBnd:\t0000000000000000
CapAmb:\t0000000000000000
NoNewPrivs:\t1
"""


def test_a_fully_dropped_process() -> None:
    assert status_problems(parse_status(DROPPED), 1002, 1002, [65534, 1002]) == []


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("CapBnd:\t0000000000000000", "CapBnd:\t000001ffffffffff", "CapBnd is 000001ffffffffff"),
        ("CapInh:\t0000000000000000", "CapInh:\t0000000000000001", "CapInh is 0000000000000001"),
        ("CapAmb:\t0000000000000000\n", "", "CapAmb is None"),
        ("NoNewPrivs:\t1", "NoNewPrivs:\t0", "NoNewPrivs is 0, expected 1"),
        ("Uid:\t1002\t1002\t1002\t1002", "Uid:\t1002\t0\t1002\t1002", "Uid is 1002 0 1002 1002"),
        ("Gid:\t1002\t1002\t1002\t1002", "Gid:\t1002\t1002\t0\t1002", "Gid is 1002 1002 0 1002"),
        ("Groups:\t1002 65534\x20", "Groups:\t0 1002 65534", "Groups is [0, 1002, 65534]"),
    ],
)
def test_each_leftover_privilege_is_reported(old: str, new: str, problem: str) -> None:
    status = parse_status(DROPPED.replace(old, new))
    problems = status_problems(status, 1002, 1002, [1002, 65534])
    assert len(problems) == 1
    assert problems[0].startswith(problem)


def test_expected_groups_in_a_user_namespace() -> None:
    assert expected_groups([1002, 1004, 27], [1002], 65534) == (1002, 65534)
    assert expected_groups([], [1002], 65534) == ()
