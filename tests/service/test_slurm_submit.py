"""Every user error of a job's shifter options fails `sbatch`, `salloc` or `srun` at once,
with one sentence and a hint, and queues nothing (real cluster: slurm_fixtures.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import image_id
from tests.services.slurm_fixtures import Slurm, own_image


@pytest.fixture(autouse=True)
def nothing_queued(slurm: Slurm) -> Iterator[None]:
    slurm.wait_idle()
    yield
    assert slurm.queue() == []
    assert set(slurm.cluster.node_states().values()) == {"idle"}


def _refused(slurm: Slurm, *args: str, phrases: tuple[str, ...], client: str = "sbatch") -> None:
    command = {"sbatch": ("sbatch", "--wrap", "true"), "salloc": ("salloc", "true"),
               "srun": ("srun", "true")}[client]  # fmt: skip
    result = slurm.run(command[0], *args, *command[1:])
    assert result.returncode != 0, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr
    assert "hint: " in result.stderr
    assert "Submitted batch job" not in result.stdout
    assert "Granted job allocation" not in result.stderr


@pytest.mark.parametrize("client", ["sbatch", "salloc", "srun"])
def test_an_unknown_module_and_an_empty_image(slurm: Slurm, client: str) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    _refused(slurm, image, "--module=nosuch", client=client,
             phrases=("--module: unknown shifter module 'nosuch'",))  # fmt: skip
    _refused(slurm, "--image=", client=client, phrases=("--image must not be empty",))


def test_images_that_cannot_be_used(slurm: Slurm) -> None:
    _refused(
        slurm,
        "--image=docker:nosuch/never-pulled:1",
        phrases=("--image=docker:nosuch/never-pulled:1: the image gateway cannot give",),
    )
    _refused(slurm, f"--image=id:{image_id('never-pulled')}", phrases=("not found",))
    _refused(
        slurm,
        f"--image={slurm.site.images.ref('private_user')}",
        phrases=("permission denied to image",),
    )
    _refused(slurm, "--image=local:/", phrases=("local images are not allowed",))


@pytest.fixture
def unreadable_image(slurm: Slurm) -> Iterator[str]:
    """An image whose file only root can read."""
    yield from own_image(slurm.site, "slurm-unreadable", 0o600)


def test_an_image_file_the_user_cannot_read(slurm: Slurm, unreadable_image: str) -> None:
    _refused(slurm, f"--image=id:{unreadable_image}", phrases=("is not readable by you",))


def test_bad_volumes(slurm: Slurm, tmp_path: Path) -> None:
    image = f"--image={slurm.site.images.ref('main')}"
    _refused(slurm, "--volume=/tmp:/data", phrases=("--volume needs --image",))
    _refused(slurm, image, "--volume=/tmp:/etc/x", phrases=("--volume: volume",))
    _refused(slurm, image, "--volume=/tmp/shifter-no-such-dir:/data",
             phrases=("/tmp/shifter-no-such-dir is not a directory",))  # fmt: skip
    _refused(slurm, image, "--volume=/tmp:/data:bogus", phrases=("--volume",))


def test_the_gateway_down(slurm: Slurm) -> None:
    slurm.site.gateway.stop()
    try:
        _refused(slurm, "--image=docker:ubuntu:22.04",
                 phrases=("the image gateway cannot give this image",))  # fmt: skip
    finally:
        slurm.site.gateway.start()


def test_a_system_the_gateway_does_not_know(slurm: Slurm) -> None:
    config = slurm.site.config
    original = config.read_text()
    config.write_text(original.replace("system=testsys", "system=nosuchsys"))
    try:
        result = slurm.run("sbatch", "--image=docker:ubuntu:22.04", "--wrap", "true")
    finally:
        config.write_text(original)
    assert result.returncode != 0
    assert (
        "rejected the lookup of docker:ubuntu:22.04: system 'nosuchsys' is not one of"
        in result.stderr
    )
    assert "hint: udiRoot.conf (system=nosuchsys) and the gateway's configuration" in result.stderr
