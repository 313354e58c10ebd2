"""The lookup cache's rules: an entry lives ttl_s and only under the generation it was
read in; a TTL of 0 turns it off."""

from __future__ import annotations

from shifter.gateway.readycache import ReadyCache
from shifter.gateway.records import ImageRecord, Status

RECORD = ImageRecord(pk=1, system="sys", itype="docker", pulltag="a:1", status=Status.READY,
                     created=0.0, image_id="a" * 64, tags=("a:1",))
KEY = ("sys", "docker", "a:1")


class Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_for_the_ttl() -> None:
    ticks = Ticks()
    cache = ReadyCache(2.0, clock=ticks)
    cache.put(KEY, RECORD, 7)
    ticks.now += 1.999
    assert cache.get(KEY, 7) is RECORD
    ticks.now += 0.001
    assert cache.get(KEY, 7) is None
    assert cache.get(KEY, 7) is None  # dropped, not just hidden


def test_a_change_of_generation_drops_it() -> None:
    cache = ReadyCache(2.0, clock=Ticks())
    cache.put(KEY, RECORD, 7)
    assert cache.get(KEY, 8) is None
    assert cache.get(KEY, 7) is None
    assert cache.get(("sys", "docker", "other:1"), 7) is None


def test_a_ttl_of_zero_keeps_nothing() -> None:
    cache = ReadyCache(0.0, clock=Ticks())
    cache.put(KEY, RECORD, 7)
    assert cache.get(KEY, 7) is None


def test_it_stays_bounded() -> None:
    cache = ReadyCache(2.0, clock=Ticks(), max_entries=3)
    for n in range(10):
        cache.put(("sys", "docker", f"t:{n}"), RECORD, 1)
    assert sum(cache.get(("sys", "docker", f"t:{n}"), 1) is not None for n in range(10)) <= 3
    assert cache.get(("sys", "docker", "t:9"), 1) is RECORD
