"""The README's demo: registry, gateway, shifterimg pull and shifter run end to end, as an
ordinary user, and nothing is left running."""

from __future__ import annotations

import subprocess
import sys

from tests.services.leftovers import processes_mentioning


def test_demo_runs_to_the_end_and_stops_its_registry() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shifter.cli.demo"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert 'PRETTY_NAME="Shifter test image (busybox)"' in result.stdout
    assert "status: READY" in result.stdout
    assert "SHIFTER_RUNTIME=1" in result.stdout
    assert "CapEff:\t0000000000000000" in result.stdout
    assert "uid=0" not in result.stdout
    assert result.stdout.rstrip().endswith("==> demo finished")
    assert processes_mentioning("shifter-demo-") == []
