"""The test fixtures' way of running a launch (tests/services/leftovers.py `run_as_group`):
what it starts ends with its timeout, grandchildren included, as a hung `shifter` under
runuser must."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.services.leftovers import process_running, run_as_group

pytestmark = pytest.mark.unit


def test_a_timeout_ends_the_whole_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    # The grandchild ignores SIGTERM and outlives its parent's kill, as a launch blocked in
    # a FUSE request would.
    script = f"sh -c 'trap \"\" TERM; echo $$ > {pid_file}; exec sleep 300' & wait"
    with pytest.raises(subprocess.TimeoutExpired):
        run_as_group(["sh", "-c", script], timeout=1)
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while process_running(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_running(grandchild)


def test_output_and_status_as_subprocess_run_gives_them() -> None:
    result = run_as_group(["sh", "-c", "cat; echo err >&2; exit 3"], input="in\n", timeout=10)
    assert (result.returncode, result.stdout, result.stderr) == (3, "in\n", "err\n")
