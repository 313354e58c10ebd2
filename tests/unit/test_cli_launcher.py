"""The isolated launcher scripts (`shifter`, `setupRoot`, `unsetupRoot`): run without `site`
and ignore the caller's PYTHON*."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

from shifter.cli.launcher import COMMANDS, SHEBANG_MAX, launcher_text, main, shebang_problem

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


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_the_written_script_runs_its_command_and_ignores_the_callers_pythonpath(
    tmp_path: Path, command: str
) -> None:
    # A `shifter` package on PYTHONPATH that breaks on import: isolated mode never sees it.
    decoy = tmp_path / "decoy" / "shifter"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise SystemExit('the decoy was imported')\n")
    target = tmp_path / "bin" / command
    target.parent.mkdir()
    assert main([str(target)]) == 0
    assert os.stat(target).st_mode & 0o777 == 0o755
    text = target.read_text()
    assert text.startswith(f"#!{os.path.abspath(sys.executable)} -IS\n")
    assert f"from {COMMANDS[command]} import main" in text
    assert repr(str(SRC)) in text and repr(sysconfig.get_path("purelib")) in text
    env = {**os.environ, "PYTHONPATH": str(decoy.parent)}
    result = subprocess.run(
        [str(target), "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith((f"Usage: {command} ", f"usage: {command} "))  # argparse


def test_one_call_writes_several_launchers(tmp_path: Path) -> None:
    targets = [tmp_path / name for name in ("shifter", "setupRoot", "unsetupRoot")]
    assert main([str(target) for target in targets]) == 0
    modules = [target.read_text().splitlines()[-2] for target in targets]
    assert modules == [
        "from shifter.cli.shifter import main",
        "from shifter.cli.setuproot import main",
        "from shifter.cli.unsetuproot import main",
    ]


def test_a_file_name_that_is_no_command_is_refused_and_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([str(tmp_path / "shifter"), str(tmp_path / "setuproot")])
    assert caught.value.code == 2
    assert "no command is named 'setuproot'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_the_commands_are_the_packages_console_scripts() -> None:
    scripts = tomllib.loads((SRC.parent / "pyproject.toml").read_text())["project"]["scripts"]
    assert {name: scripts[name] for name in COMMANDS} == {
        name: f"{module}:main" for name, module in COMMANDS.items()
    }
