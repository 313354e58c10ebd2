"""`shifter-slurm-conf`: the lines a site pastes (forms the issue fixes), and the build of
the SPANK plugin with the machine's compiler and Slurm headers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shifter.wlm import plugin

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _conf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "shifter-slurm-conf"), *args], capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_plugstack_names_the_installed_plugin_by_absolute_path(tmp_path: Path) -> None:
    config = tmp_path / "udiRoot.conf"
    result = _conf("plugstack", "--shifter-config", str(config))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    words = line.split()
    assert words[0] in ("required", "optional")
    assert words[1] == plugin.plugin_path() and Path(words[1]).is_absolute()
    assert Path(words[1]).is_file()  # install.sh built it
    assert not Path(words[1]).is_relative_to(REPO / "build")
    assert words[2:] == [f"shifter_config={config}"]


def test_slurm_lines_are_key_value_lines() -> None:
    result = _conf("slurm")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(re.match(r"^[A-Za-z]+=\S+$", line) for line in lines)
    assert "PrologFlags=Alloc,Contain" in lines


def test_the_plugin_builds_here(tmp_path: Path) -> None:
    output = tmp_path / "lib" / "shifter_slurm.so"
    result = _conf("build", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(output)
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(output)], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    for symbol in ("slurm_spank_init", "slurm_spank_init_post_opt", "slurm_spank_job_prolog",
                   "slurm_spank_job_epilog", "slurm_spank_task_init", "plugin_name"):  # fmt: skip
        assert re.search(rf" {symbol}$", symbols, re.MULTILINE), symbol


def test_without_a_compiler_the_build_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(plugin.BuildError, match="no C compiler") as raised:
        plugin.build(str(tmp_path / "x.so"), compiler="shifter-no-such-cc")
    assert raised.value.hint is not None and "gcc" in raised.value.hint


def test_without_slurm_headers_the_build_says_what_to_install(tmp_path: Path) -> None:
    missing = str(tmp_path / "include" / "slurm" / "spank.h")
    with pytest.raises(plugin.BuildError, match=r"spank\.h is missing") as raised:
        plugin.build(str(tmp_path / "x.so"), spank_header=missing)
    assert raised.value.hint is not None and "libslurm-dev" in raised.value.hint
    assert not (tmp_path / "x.so").exists()
