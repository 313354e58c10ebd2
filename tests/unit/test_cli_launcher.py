"""The isolated `shifter` launcher script: runs without `site` and ignores the caller's PYTHON*."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from shifter.cli.launcher import SHEBANG_MAX, launcher_text, main, shebang_problem

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src"


def test_the_script_starts_python_isolated_without_site() -> None:
    text = launcher_text("/venv/bin/python", "/opt/src", "/venv/site-packages")
    lines = text.splitlines()
    assert lines[0] == "#!/venv/bin/python -IS"
    assert "sys.path += ['/opt/src', '/venv/site-packages']" in lines
    assert lines[-2:] == ["from shifter.cli.shifter import main", "sys.exit(main())"]


def test_site_packages_is_listed_once_when_it_holds_the_package() -> None:
    text = launcher_text("/venv/bin/python", "/venv/site-packages", "/venv/site-packages")
    assert "sys.path += ['/venv/site-packages']" in text.splitlines()


@pytest.mark.parametrize(
    ("python", "problem"),
    [
        ("/opt/my venv/bin/python", "contains whitespace"),
        ("/" + "p" * SHEBANG_MAX, "longer than a #! line allows"),
    ],
)
def test_an_interpreter_a_shebang_cannot_name_is_refused(python: str, problem: str) -> None:
    found = shebang_problem(python)
    assert found is not None and problem in found


def test_the_written_script_runs_shifter_and_ignores_the_callers_pythonpath(
    tmp_path: Path,
) -> None:
    # A `shifter` package on PYTHONPATH that breaks on import: isolated mode never sees it.
    decoy = tmp_path / "decoy" / "shifter"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    target = tmp_path / "shifter"
    assert main([str(target)]) == 0
    assert os.stat(target).st_mode & 0o777 == 0o755
    text = target.read_text()
    assert text.startswith(f"#!{os.path.abspath(sys.executable)} -IS\n")
    assert repr(str(SRC)) in text and repr(sysconfig.get_path("purelib")) in text
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    result = subprocess.run(
        [str(target), "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: shifter [OPTIONS]")
