"""proc.run_light: the userhooks' way to start a program on the launch path (fork, exec,
stderr through a pipe) behaves like proc.run where it matters."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shifter import proc
from shifter.errors import ToolError, ToolNotFoundError

pytestmark = pytest.mark.unit

ENV = {"PATH": "/usr/bin:/bin"}


def test_runs_in_cwd_with_exactly_env(tmp_path: Path) -> None:
    out = tmp_path / "out"
    script = f'pwd > {out}; env | grep -v "^PWD=\\|^SHLVL=\\|^_=" | sort >> {out}'
    proc.run_light(["/bin/sh", "-c", script], env={**ENV, "HOOK": "x"}, cwd=str(tmp_path))
    assert out.read_text().splitlines() == [str(tmp_path), "HOOK=x", "PATH=/usr/bin:/bin"]


def test_a_failure_carries_the_status_and_the_last_stderr_lines(tmp_path: Path) -> None:
    script = "for i in $(seq 1 15); do echo line $i >&2; done; exit 3"
    with pytest.raises(ToolError) as caught:
        proc.run_light(["/bin/sh", "-c", script], env=ENV, cwd=str(tmp_path))
    assert caught.value.message == "sh failed with exit status 3"
    assert caught.value.returncode == 3
    assert caught.value.stderr_tail.splitlines() == [f"line {i}" for i in range(6, 16)]


def test_a_missing_directory_is_reported_by_the_child(tmp_path: Path) -> None:
    with pytest.raises(ToolError) as caught:
        proc.run_light(["/bin/true"], env=ENV, cwd=str(tmp_path / "gone"))
    assert caught.value.returncode == proc.EXIT_NOT_STARTED
    assert "No such file or directory" in caught.value.stderr_tail


def test_a_missing_program() -> None:
    with pytest.raises(ToolNotFoundError, match="required tool not found: /no/such/tool"):
        proc.run_light(["/no/such/tool"], env=ENV, cwd="/")


def test_only_the_standard_descriptors_and_default_sigpipe(tmp_path: Path) -> None:
    # Far above what ls opens itself, so only a leak can show it.
    opened = os.open(os.devnull, os.O_RDONLY)
    inherited = os.dup2(opened, 100, inheritable=True)
    os.close(opened)
    out = tmp_path / "out"
    try:
        proc.run_light(
            ["/bin/sh", "-c", f"ls /proc/self/fd > {out}; grep SigIgn /proc/self/status >> {out}"],
            env=ENV, cwd="/",
        )  # fmt: skip
    finally:
        os.close(inherited)
    lines = out.read_text().splitlines()
    assert str(inherited) not in lines[:-1]
    ignored = int(lines[-1].split()[1], 16)
    assert not ignored & (1 << (13 - 1))  # SIGPIPE
