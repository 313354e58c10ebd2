"""`shifter --image=docker:TAG` end to end: the real gateway (`shifter-imagegw serve`), a
real registry and munged, the image pulled with `shifterimg`, then launched by an ordinary
user: the lookup goes over the minimal HTTP exchange (no `http.client`), with the user's
munge credential, and a tag the gateway does not have is a clean refusal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.service.test_shifterimg_e2e import ok, push_public
from tests.services.gateway_fixtures import SYSTEM, USER_A, GatewayEnv, Site
from tests.services.registries import RegistryEndpoint

SHIFTER = Path(sys.executable).parent / "shifter"


@pytest.fixture
def node() -> Iterator[Path]:
    """udiMount, loopMount and an imagePath the test users can read (pytest's are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="shifter-docker-node-"))
    directory.chmod(0o755)
    for name in ("udiMount", "loopMount", "images"):
        (directory / name).mkdir(mode=0o755)
    yield directory
    shutil.rmtree(directory)


def _launch(site: Site, *args: str, command: Path = SHIFTER) -> subprocess.CompletedProcess[str]:
    """`shifter ARGS` as USER_A with Python's import trace (`-X importtime`) on stderr."""
    argv = ["/usr/sbin/runuser", "-u", USER_A, "--", sys.executable, "-X", "importtime",
            str(command), *args]  # fmt: skip
    return subprocess.run(argv, env=site.env(USER_A), capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def _imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.split("|")[-1].strip() for line in result.stderr.splitlines()}


def test_a_docker_launch_looks_the_image_up_at_the_gateway(
    start_site: Callable[..., Site], gateway_env: GatewayEnv, registry_anon: RegistryEndpoint,
    repo_name: str, node: Path,
) -> None:  # fmt: skip
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    ok(site.run("pull", tag))
    image_id = ok(site.run("lookup", tag)).strip()
    for suffix in ("meta", "squashfs"):
        copy = node / "images" / f"{image_id}.{suffix}"
        shutil.copy(gateway_env.image_dir / f"{image_id}.{suffix}", copy)
        copy.chmod(0o644)
    site.config.write_text(
        f"udiMount={node}/udiMount\nloopMount={node}/loopMount\nimagePath={node}/images\n"
        f"rootfsType=tmpfs\npopulateEtcDynamically=1\nsystem={SYSTEM}\n"
        f"imageGateway={' '.join(site.gateways)}\ngatewayTimeout=30\n"
    )
    result = _launch(site, f"--image=docker:{tag}", "sh", "-c", 'echo "$SHIFTER_IMAGE"')
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == f"{image_id}\n"
    imported = _imported(result)
    assert "shifter.gwclient.plainhttp" in imported
    assert not {"http.client", "dataclasses", "json"} & imported
    # What workflow tools call in loops takes the same lean way, without the parser.
    looked_up = _launch(site, "lookup", tag, command=SHIFTER.parent / "shifterimg")
    assert (looked_up.returncode, looked_up.stdout) == (0, f"{image_id}\n"), looked_up.stderr
    assert not {"argparse", "dataclasses", "http.client", "json"} & _imported(looked_up)

    missing = _launch(site, f"--image=docker:{repo_name}:nosuchtag", "true")
    assert missing.returncode == 1
    assert (
        f"shifter: image docker:{repo_name}:nosuchtag is not on the image gateway, "
        "or you may not use it"
    ) in missing.stderr
