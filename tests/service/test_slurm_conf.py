"""`shifter-slurm-conf`: the lines a site pastes (forms the issue fixes), and the build of
the SPANK plugin with the machine's compiler and Slurm headers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from shifter.wlm import plugin
from tests.services.slurm_fixtures import Slurm

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


def _client_with_plugin_args(
    slurm: Slurm, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`sbatch --help` with the plugin loaded with `args` (a copy of the test cluster's
    slurm.conf naming another plugstack.conf): sbatch loads the plugin before anything."""
    line = _conf("plugstack", "--shifter-config", str(slurm.site.config)).stdout.strip()
    plugstack = tmp_path / "plugstack.conf"
    plugstack.write_text(f"{line} {' '.join(args)}\n")
    conf = tmp_path / "slurm.conf"
    text = slurm.cluster.conf.read_text()
    conf.write_text(re.sub(r"(?m)^PlugStackConfig=.*$", f"PlugStackConfig={plugstack}", text))
    for path in (tmp_path, plugstack, conf):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {**slurm.env(), "SLURM_CONF": str(conf)}
    return subprocess.run(["sbatch", "--help"], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("bogus=1",), "unknown plugstack.conf argument 'bogus=1'"),
        (("enable_sshd=2",), "enable_sshd=2: expected 0 or 1"),
        (("shifter_config=relative.conf",), "'shifter_config=relative.conf' is not valid"),
        (("enable_ccm=1",), "enable_ccm=1 needs enable_sshd=1"),
    ],
)
def test_bad_plugin_arguments_stop_the_slurm_commands(
    slurm: Slurm, tmp_path: Path, args: tuple[str, ...], phrase: str
) -> None:
    result = _client_with_plugin_args(slurm, tmp_path, *args)
    assert result.returncode != 0
    assert phrase in result.stderr, result.stderr


def test_every_plugin_argument_and_the_options_it_registers(slurm: Slurm, tmp_path: Path) -> None:
    args = ("ENABLE_SSHD=1", "enable_ccm=1", "memory_cgroup=/sys/fs/cgroup/memory",
            "extern_cgroup=0", "extern_setup=/bin/true")  # fmt: skip
    result = _client_with_plugin_args(slurm, tmp_path, *args)
    assert result.returncode == 0, result.stderr
    for option in ("--image=TYPE:TAG", "--volume=SRC:DEST[:FLAGS]", "--module=LIST", "--ccm"):
        assert option in result.stdout
    without_ccm = _client_with_plugin_args(slurm, tmp_path)
    assert "--image=TYPE:TAG" in without_ccm.stdout and "--ccm" not in without_ccm.stdout
