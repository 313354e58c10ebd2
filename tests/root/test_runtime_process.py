"""The launcher becomes the command: signals sent to shifter's PID reach it, its exit
status is shifter's; many launches of one image run at once; and the environment is
built as specified."""

from __future__ import annotations

import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import (
    SHIFTER,
    TEST_USER,
    Site,
    container_env_from_exactly,
    gid_of,
    shifter_env,
    uid_of,
)

TRAPPING = (
    'trap "echo got-TERM; exit 42" TERM; trap "echo got-INT; exit 43" INT; echo ready; '
    "while :; do sleep 0.05; done"
)


def _start_as_user(site: Site, *args: str) -> subprocess.Popen[str]:
    # setpriv execs shifter (runuser would stay as its parent): the PID we hold is
    # shifter's, and after the launch, the command's.
    argv = [
        "setpriv", f"--reuid={uid_of(TEST_USER)}", f"--regid={gid_of(TEST_USER)}",
        "--init-groups", str(SHIFTER), *args,
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        env=shifter_env(site.config),
        cwd=site.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGTERM, 42, "got-TERM"), (signal.SIGINT, 43, "got-INT")],
)
def test_signals_reach_the_command(
    runtime_site: Site, signum: signal.Signals, status: int, said: str
) -> None:
    process = _start_as_user(
        runtime_site, f"--image={runtime_site.images.ref('main')}", "sh", "-c", TRAPPING
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signum)
        assert process.wait(timeout=30) == status
        assert process.stdout.read() == f"{said}\n"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_death_by_signal_is_passed_through(runtime_site: Site) -> None:
    process = _start_as_user(
        runtime_site,
        f"--image={runtime_site.images.ref('main')}",
        "sh",
        "-c",
        "echo ready; exec sleep 60",
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_eight_concurrent_launches_of_one_image(runtime_site: Site) -> None:
    image = f"--image={runtime_site.images.ref('main')}"

    def launch(number: int) -> subprocess.CompletedProcess[str]:
        return runtime_site.run(image, "sh", "-c", f"sleep 0.3; cat /etc/os-release; echo {number}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(launch, range(8)))
    for number, result in enumerate(results):
        assert result.returncode == 0, result.stderr
        assert result.stdout.endswith(f"{number}\n")
        assert "Shifter Test Image" in result.stdout


def _env(site: Site, *args: str, env: dict[str, str] | None = None, image: str = "main") -> dict:
    result = site.run(f"--image={site.images.ref(image)}", *args, "env", env=env)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_environment_layers(runtime_site: Site) -> None:
    env_file = runtime_site.root / "vars.env"
    env_file.write_text("# comment\n\nFROM_FILE=file\nBOTH=file\nQUOTED='kept'\n")
    env_file.chmod(0o644)
    runtime_site.configure("siteEnv=SITE=site BOTH=site-wins", "siteEnvAppend=PATH=/site/bin")
    host = {"HOST_VAR": "host", "LD_LIBRARY_PATH": "/host/lib", "TMPDIR": "/host/tmp"}
    env = _env(
        runtime_site,
        f"--env-file={env_file}",
        "-e",
        "CLI=cli",
        "--env=IMAGE_VAR=cli-wins",
        env=host,
    )
    assert env["HOST_VAR"] == "host"
    assert "LD_LIBRARY_PATH" not in env and "TMPDIR" not in env  # as a setuid program
    assert env["IMAGE_VAR"] == "cli-wins"
    assert env["FROM_FILE"] == "file"
    assert env["QUOTED"] == "'kept'"
    assert env["CLI"] == "cli"
    assert env["SITE"] == "site"
    assert env["BOTH"] == "site-wins"
    assert env["PATH"] == "/usr/bin:/bin:/site/bin"
    assert env["SHIFTER_IMAGE"] == runtime_site.images.id("main")
    assert env["SHIFTER_IMAGEREQUEST"] == runtime_site.images.ref("main")


@pytest.mark.parametrize(
    "locale",
    [{}, {"LANG": "C"}, {"LC_CTYPE": "POSIX"}, {"LANG": "xx_XX.UTF-8"}, {"LC_ALL": "C"}],
)
def test_the_callers_environment_exactly_whatever_its_locale(
    runtime_site: Site, locale: dict[str, str]
) -> None:
    # With a C locale, Python's locale coercion (PEP 538) puts LC_CTYPE=C.UTF-8 into its
    # own environment; the container must not see it.
    given = {"HOST_VAR": "host", **locale}
    env = container_env_from_exactly(
        runtime_site.config, given, f"--image={runtime_site.images.ref('main')}"
    )
    image = runtime_site.images.id("main")
    assert env == {
        **given,
        "PATH": "/usr/bin:/bin",  # the image's
        "SHIFTER_CONFIG": str(runtime_site.config),
        "IMAGE_VAR": "from-image",
        "SHIFTER_IMAGE": image,
        "SHIFTER_IMAGEREQUEST": f"id:{image}",
    }


def test_clearenv_keeps_only_what_shifter_and_the_image_set(runtime_site: Site) -> None:
    env = _env(runtime_site, "--clearenv", env={"HOST_VAR": "host"})
    assert "HOST_VAR" not in env
    assert env["IMAGE_VAR"] == "from-image"
    assert set(env) <= {
        "PATH",
        "IMAGE_VAR",
        "SHIFTER_IMAGE",
        "SHIFTER_IMAGEREQUEST",
        "PWD",
        "SHLVL",
    }


def _image_of(site: Site, *args: str, env: dict[str, str]) -> str:
    result = site.run(*args, "sh", "-c", "echo $SHIFTER_IMAGE", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_image_chosen_by_environment_variables(runtime_site: Site) -> None:
    main, plain = runtime_site.images.id("main"), runtime_site.images.id("plain")
    spank = {"SLURM_SPANK_SHIFTER_IMAGETYPE": "id", "SLURM_SPANK_SHIFTER_IMAGE": plain}
    assert _image_of(runtime_site, env=spank) == plain
    both = {**spank, "SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": main}
    assert _image_of(runtime_site, env=both) == main
    everything = {**both, "SHIFTER": f"id:{plain}"}
    assert _image_of(runtime_site, env=everything) == plain
    assert _image_of(runtime_site, f"--image=id:{main}", env=everything) == main
    half = {"SHIFTER_IMAGETYPE": "id", **spank}  # a pair is used whole or not at all
    assert _image_of(runtime_site, env=half) == plain


def test_workdir_falls_back_to_the_root(runtime_site: Site) -> None:
    # The fallback order: the caller's cwd, the image WORKDIR (this image has none), /.
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('plain')}", "pwd", cwd=Path("/root")
    )
    assert result.returncode == 0
    assert result.stdout == "/\n"
