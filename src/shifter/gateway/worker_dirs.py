"""Job directories in ExpandDirectory: one per claim, `.shifter-job-<job>-<claim>`, removed
when the job ends; `reap_job_dirs` removes those whose claim is gone (a worker that died,
an attempt taken over by another gateway).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

from shifter.gateway import store_jobs as jobs
from shifter.gateway.store import MetadataStore
from shifter.gateway.store_jobs import Job

JOB_DIR = re.compile(r"\.shifter-job-(\d+)-([0-9a-f]{32})\Z")
META_SCRATCH_PREFIX = ".meta."
STALE_SCRATCH_S = 3600.0


def job_dir(expand_directory: Path, job: Job) -> Path:
    """The directory of the job's current claim (the name `JOB_DIR` matches)."""
    return expand_directory / f".shifter-job-{job.pk}-{job.claim}"


def remove_tree(path: Path) -> None:
    """Remove a job directory, even one holding read-only directories."""

    def writable_then_retry(function: Callable[..., object], name: str, _: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            function(name)

    if path.exists():
        shutil.rmtree(path, onerror=writable_then_retry)


def reap_job_dirs(expand_directory: Path, still_held: Callable[[int, str], bool]) -> int:
    """Remove job directories of claims no worker holds any more, and `.meta` scratch
    directories (image_files.py) a killed gateway left over an hour ago; returns how many."""
    removed = 0
    stale = time.time() - STALE_SCRATCH_S
    with contextlib.suppress(FileNotFoundError):
        for entry in expand_directory.iterdir():
            match = JOB_DIR.match(entry.name)
            if (match and not still_held(int(match.group(1)), match.group(2))) or (
                    entry.name.startswith(META_SCRATCH_PREFIX) and entry.is_dir()
                    and entry.lstat().st_mtime < stale):
                remove_tree(entry)
                removed += 1
    return removed


def held_checker(store: MetadataStore) -> Callable[[int, str], bool]:
    """`still_held` for `reap_job_dirs` against the store."""

    def check(pk: int, claim: str) -> bool:
        with store.reading() as conn:
            return jobs.still_held(conn, pk, claim)

    return check
