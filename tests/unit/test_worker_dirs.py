"""What the scratch area (ExpandDirectory) keeps: the directories of claims still held and
recent `.meta` scratch; job directories of lost claims and old `.meta` scratch go."""

from __future__ import annotations

import os
import time
from pathlib import Path

from shifter.gateway.worker_dirs import reap_job_dirs

CLAIM = "a" * 32


def test_reaping_keeps_held_claims_and_recent_scratch(tmp_path: Path) -> None:
    held = tmp_path / f".shifter-job-1-{CLAIM}"
    lost = tmp_path / f".shifter-job-2-{CLAIM}"
    recent, old = tmp_path / ".meta.recent", tmp_path / ".meta.old"
    other = tmp_path / "someone-elses"
    for directory in (held, lost, recent, old, other):
        (directory / "sub").mkdir(parents=True)
    then = time.time() - 7200
    os.utime(old, (then, then))
    os.utime(other, (then, then))
    assert reap_job_dirs(tmp_path, lambda pk, claim: pk == 1) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [held.name, recent.name, other.name])
