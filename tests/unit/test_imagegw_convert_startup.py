"""`shifter-imagegw convert` without `--config` skips the configuration model, and means the
same as with an empty imagemanager.json; and it loads none of what it does not use."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from shifter.cli import imagegw_convert
from shifter.cli.imagegw import build_parser
from shifter.engine.progress import SilentProgress
from shifter.gateway.config import GatewayConfig

# Not needed to convert an image without --config: the configuration model, and httpx's
# command-line client with what it pulls in.
UNNEEDED = ("pydantic", "shifter.gateway", "httpx._main", "click", "pygments", "rich")


def parsed(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["convert", *argv, "busybox:1.36", "/tmp/out"])


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("--platform", "linux/arm64/v8", "--format", "ext4"),
        ("--cache", "/tmp/c", "--ca", "/tmp/ca.pem", "--insecure", "--creds", "u:p:w"),
    ],
)
def test_no_config_means_an_empty_imagemanager_json(
    argv: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    args = parsed(*argv)
    silent = SilentProgress()
    without = dataclasses.replace(imagegw_convert.default_pull_options(args), progress=silent)
    empty = dataclasses.replace(
        imagegw_convert.pull_options(GatewayConfig.default(), args), progress=silent
    )
    assert without == empty


def test_a_convert_without_config_loads_no_configuration_model(tmp_path: Path) -> None:
    # An invalid platform fails inside the engine, before any network: far enough to have
    # imported everything a conversion imports.
    code = (
        "import sys\n"
        "from shifter.cli.imagegw import main\n"
        f"status = main(['convert', '--platform', 'nonsense', '--cache', {str(tmp_path)!r},\n"
        f"              'busybox:1.36', {str(tmp_path / 'out')!r}])\n"
        "print(status, 'shifter.engine.pull' in sys.modules)\n"
        f"print(*sorted(m for m, v in sys.modules.items() if v and m.startswith({UNNEEDED!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    status_line, loaded = result.stdout.splitlines()
    assert status_line == "1 True", result.stderr
    assert "invalid platform" in result.stderr
    assert loaded == ""
