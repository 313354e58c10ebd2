"""`shifter-imagegw convert` end to end, as a subprocess against the real registry."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shifter import proc
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from tests.service.test_pull_support import push
from tests.services.registries import RegistryEndpoint

CLI = Path(sys.executable).parent / "shifter-imagegw"


def convert(*args: str | Path, home: Path) -> subprocess.CompletedProcess[str]:
    # A private HOME: the default layer cache (~/.cache/shifter) lands in the test's dir.
    environ = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    environ.update(HOME=str(home), XDG_CACHE_HOME="")
    return subprocess.run(
        [str(CLI), "convert", *map(str, args)],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )


@pytest.fixture
def busybox_ref(registry_anon: RegistryEndpoint, repo_name: str) -> str:
    push(registry_anon, "busybox", repo_name)
    return f"{registry_anon.netloc}/{repo_name}:v1"


def test_convert_prints_the_id_last_and_writes_the_files(busybox_ref: str, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "images"  # created by the command
    result = convert("--insecure", busybox_ref, dest, home=tmp_path)
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.splitlines()[-1]
    assert image_id == catalog.build("busybox").digest.split(":")[1]
    names = sorted(p.name for p in dest.iterdir())
    assert names == [f"{image_id}.json", f"{image_id}.meta", f"{image_id}.squashfs"]
    for name in names:
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o644
    assert (tmp_path / ".cache/shifter/sha256").is_dir(), "the default cache is ~/.cache/shifter"
    meta = read_meta(str(dest / f"{image_id}.meta"))
    assert meta.entrypoint == ("/bin/echo", "shifter-test-entrypoint")


def test_convert_to_ext4(busybox_ref: str, tmp_path: Path) -> None:
    result = convert("--insecure", "--format", "ext4", busybox_ref, tmp_path / "out", home=tmp_path)
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.splitlines()[-1]
    image = tmp_path / "out" / f"{image_id}.ext4"
    assert read_meta(str(tmp_path / "out" / f"{image_id}.meta")).format == "ext4"
    release = proc.run(["debugfs", "-R", "cat /etc/os-release", str(image)]).stdout
    assert release == catalog.OS_RELEASE
    listing = proc.run(["debugfs", "-R", "ls -l /bin", str(image)]).stdout.decode()
    assert "busybox" in listing


def test_warm_reconvert_is_quick_and_prints_the_same_id(busybox_ref: str, tmp_path: Path) -> None:
    first = convert("--insecure", busybox_ref, tmp_path / "out", home=tmp_path)
    started = time.monotonic()
    second = convert("--insecure", busybox_ref, tmp_path / "out", home=tmp_path)
    elapsed = time.monotonic() - started
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[-1] == first.stdout.splitlines()[-1]
    # Interpreter start-up included; the pull itself is checked against 1 s in-process.
    assert elapsed < 3.0, f"warm convert took {elapsed:.2f} s"


def test_config_file_supplies_locations_and_cache(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "multiarch", repo_name)
    config = {
        "DefaultImageLocation": "testreg",
        "DefaultPlatform": "linux/arm64",
        "CacheDirectory": str(tmp_path / "gwcache"),
        "ExpandDirectory": str(tmp_path / "expand"),
        "Locations": {"testreg": {"url": registry_anon.url}},
        "Platforms": {},
    }
    path = tmp_path / "imagemanager.json"
    path.write_text(json.dumps(config))
    result = convert("--config", path, f"testreg/{repo_name}:v1", tmp_path / "out", home=tmp_path)
    assert result.returncode == 0, result.stderr
    image_id = result.stdout.splitlines()[-1]
    sidecar = json.loads((tmp_path / "out" / f"{image_id}.json").read_text())
    assert sidecar["platform"]["architecture"] == "arm64"
    assert (tmp_path / "gwcache/sha256").is_dir()
    assert not (tmp_path / ".cache").exists()


def test_missing_image_is_one_line_with_a_hint(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    reference = f"{registry_anon.netloc}/{repo_name}:nope"
    result = convert("--insecure", reference, tmp_path / "out", home=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == f"shifter-imagegw: image not found: {reference}"
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    reference = f"{registry_anon.netloc}/{repo_name}:nope"
    result = convert("--debug", "--insecure", reference, tmp_path / "out", home=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert f"shifter-imagegw: image not found: {reference}" in result.stderr
    assert f"{os.uname().nodename}:" in result.stderr, "log lines carry host:pid"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--platform", "linux"], "shifter-imagegw: invalid platform 'linux'"),
        (["--creds", "nocolon"], "shifter-imagegw: --creds must be USER:PASSWORD"),
        (
            ["--config", "/nonexistent/imagemanager.json"],
            "shifter-imagegw: /nonexistent/imagemanager.json: does not exist",
        ),
    ],
)
def test_bad_arguments_are_reported(
    args: list[str], message: str, busybox_ref: str, tmp_path: Path
) -> None:
    result = convert(*args, "--insecure", busybox_ref, tmp_path / "out", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(message), result.stderr


def test_usage_error_exits_2(tmp_path: Path) -> None:
    result = convert("--format", "tarball", "x", tmp_path, home=tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'tarball'" in result.stderr


def test_tls_registry_with_ca_option(
    registry_tls: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_tls, "busybox", repo_name)
    reference = f"{registry_tls.netloc}/{repo_name}:v1"
    refused = convert(reference, tmp_path / "out", home=tmp_path)
    assert refused.returncode == 1
    assert "cannot verify the TLS certificate" in refused.stderr.splitlines()[0]
    result = convert("--ca", registry_tls.ca_file, reference, tmp_path / "out", home=tmp_path)
    assert result.returncode == 0, result.stderr


def test_basic_registry_with_creds_needs_insecure_over_http(
    registry_basic: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_basic, "busybox", repo_name, user="pusher")
    reference = f"{registry_basic.netloc}/{repo_name}:v1"
    config = tmp_path / "imagemanager.json"
    config.write_text(
        json.dumps(
            {
                "DefaultImageLocation": registry_basic.netloc,
                "CacheDirectory": str(tmp_path / "cache"),
                "ExpandDirectory": str(tmp_path / "expand"),
                "Locations": {registry_basic.netloc: {"url": registry_basic.url}},
            }
        )
    )
    creds = f"puller:{registry_basic.credentials['puller']}"
    refused = convert(
        "--config", config, "--creds", creds, reference, tmp_path / "out", home=tmp_path
    )
    assert refused.returncode == 1
    assert "refusing to send registry credentials over plain http" in refused.stderr
    result = convert(
        "--config",
        config,
        "--insecure",
        "--creds",
        creds,
        reference,
        tmp_path / "out",
        home=tmp_path,
    )
    assert result.returncode == 0, result.stderr


def test_help_describes_the_command(tmp_path: Path) -> None:
    top = subprocess.run([str(CLI), "--help"], capture_output=True, text=True, check=True)
    assert "convert" in top.stdout
    result = convert("--help", home=tmp_path)
    assert result.returncode == 0
    for option in ("--config", "--insecure", "--creds", "--ca", "--platform", "--format"):
        assert option in result.stdout
    assert "--cache" in result.stdout and "--debug" in result.stdout
