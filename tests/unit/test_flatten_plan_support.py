"""Helpers shared by the test_flatten_plan* modules (this module holds no tests): layers
written from entries into a plan, and questions asked of a plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shifter.convert.layers import Kind
from shifter.convert.plan import Plan, PlannedEntry, plan_layers
from shifter.ocibuild.layer import Compression, Entry, build_layer


def plan_of(
    tmp_path: Path,
    *layers: Sequence[Entry],
    ownership: str = "root",
    compression: Compression = Compression.NONE,
) -> Plan:
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, entries in enumerate(layers):
        path = tmp_path / f"layer{index}"
        path.write_bytes(build_layer(list(entries), compression).blob)
        paths.append(path)
    return plan_layers(paths, ownership=ownership)  # type: ignore[arg-type]


def entry(plan: Plan, path: str) -> PlannedEntry:
    found = plan.get(path)
    assert found is not None, f"{path!r} is not in the plan: {sorted(e.path for e in plan.entries)}"
    return found


def skipped(plan: Plan) -> dict[str, str]:
    return {s.path: s.reason for s in plan.skipped}


def same_inode(plan: Plan, a: str, b: str) -> bool:
    """Whether `a` and `b` are one hard-linked file in the plan."""
    first, second = entry(plan, a), entry(plan, b)
    carrier = {first.link if first.kind is Kind.HARDLINK else a}
    carrier.add(second.link if second.kind is Kind.HARDLINK else b)
    return len(carrier) == 1 and entry(plan, carrier.pop()).kind is Kind.FILE


def source_name(plan: Plan, path: str) -> tuple[int, str]:
    """(layer, member name) that supplies the data of `path`, following a hard link."""
    found = entry(plan, path)
    if found.kind is Kind.HARDLINK:
        found = entry(plan, found.link)
    assert found.kind is Kind.FILE and found.source is not None
    return found.source.layer, found.source.name
