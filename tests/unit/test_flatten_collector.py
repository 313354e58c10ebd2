"""The garbage collector during planning: paused while a layer is applied, on while the next
layer is awaited (a download can take minutes, and the gateway shares the process), and on
again afterwards whether planning succeeded or failed."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.convert.layers import Header, LayerError, read_headers
from shifter.convert.plan import paused_gc, plan_from_headers
from shifter.ocibuild.layer import Compression, Dir, Entry, File, HardLink, build_layer


def headers_of(tmp_path: Path, name: str, entries: list[Entry]) -> list[Header]:
    path = tmp_path / name
    path.write_bytes(build_layer(entries, Compression.GZIP).blob)
    return list(read_headers(path))


def lazily(layers: list[list[Header]], seen: list[bool]) -> Iterator[list[Header]]:
    """The layers as the pull engine hands them over; notes whether the collector is on
    each time the planner waits for the next one."""
    for headers in layers:
        seen.append(gc.isenabled())
        yield headers
    seen.append(gc.isenabled())


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    assert gc.isenabled(), "the test run itself left the collector off"
    yield
    gc.enable()  # a failing test must not leave it off for the next


def test_the_collector_is_on_between_layers_and_after_the_plan(tmp_path: Path) -> None:
    layers = [
        headers_of(tmp_path, "l0", [Dir("a"), File("a/x", b"x")]),
        headers_of(tmp_path, "l1", [File("a/y", b"y"), HardLink("a/z", "a/x")]),
    ]
    seen: list[bool] = []
    plan = plan_from_headers(lazily(layers, seen), ownership="root")
    assert plan.get("a/z") is not None
    assert seen == [True, True, True]
    assert gc.isenabled()


def test_the_collector_is_on_again_after_a_failed_plan(tmp_path: Path) -> None:
    layers = [
        headers_of(tmp_path, "l0", [Dir("a")]),
        headers_of(tmp_path, "l1", [HardLink("a/z", "a/missing")]),  # fails while applied
    ]
    seen: list[bool] = []
    with pytest.raises(LayerError, match="a/missing"):
        plan_from_headers(lazily(layers, seen), ownership="root")
    assert seen == [True, True]
    assert gc.isenabled()


def test_the_collector_is_on_again_when_the_download_fails(tmp_path: Path) -> None:
    def failing() -> Iterator[list[Header]]:
        yield headers_of(tmp_path, "l0", [Dir("a")])
        raise OSError("connection reset")  # what a download worker's failure looks like here

    with pytest.raises(OSError, match="connection reset"):
        plan_from_headers(failing(), ownership="root")
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_paused_by_someone_else_paused() -> None:
    gc.disable()
    with paused_gc():
        assert not gc.isenabled()
    assert not gc.isenabled()
