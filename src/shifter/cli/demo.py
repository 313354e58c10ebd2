"""The README's demo: from a registry to a command running in a container, on embedded defaults.

Run by `scripts/demo.sh` (as root, after `scripts/install.sh`). It starts, on free loopback
ports and in one temp directory: a private munged, a private registry holding a busybox demo
image built from scratch, and the image gateway on SQLite. Then, as the unprivileged account
`shifterdemo`, it pulls the image with `shifterimg` and runs a command in it with `shifter`,
exactly as a user would type them. Everything it starts is stopped, by PID, before it returns.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from shifter import proc
from shifter.devtools.munged import MungeServer
from shifter.devtools.registry import RegistryServer
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image

DEMO_IMAGE = "busybox"
DEMO_REPOSITORY = "demo/busybox"
DEMO_TAG = "latest"
DEMO_USER = "shifterdemo"
SYSTEM = "demo"
GATEWAY_START_TIMEOUT_S = 60.0


def _say(step: str) -> None:
    print(f"==> {step}", flush=True)


def _command(name: str) -> str:
    """The project's own command from the venv this module runs in."""
    return str(Path(sys.executable).parent / name)


def _run(
    argv: Sequence[str], *, env: dict[str, str] | None = None, user: str | None = None
) -> str:
    shown = shlex.join(argv)
    if user is not None:
        print(f"{user}$ {shown}", flush=True)
        pass_env = [f"{k}={v}" for k, v in (env or {}).items()]
        argv = ["runuser", "-u", user, "--", "env", *pass_env, *argv]
    else:
        print(f"# {shown}", flush=True)
    output = proc.run(argv).stdout.decode()
    sys.stdout.write(output)
    return output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gateway_config(workdir: Path, registry: RegistryServer, munge: MungeServer) -> Path:
    """imagemanager.json for one local platform, the demo registry as default location."""
    images = workdir / "images"
    for directory in (images, workdir / "cache", workdir / "expand", workdir / "gateway"):
        directory.mkdir(parents=True, exist_ok=True)
    images.chmod(0o755)
    config = {
        "DefaultImageLocation": registry.netloc,
        "DefaultImageFormat": "squashfs",
        "ImageExpirationTimeout": "90:00:00:00",
        "CacheDirectory": str(workdir / "cache"),
        "ExpandDirectory": str(workdir / "expand"),
        "MetadataStore": f"sqlite:///{workdir}/gateway/imagegw.sqlite",
        "WorkerThreads": 2,
        "Locations": {registry.netloc: {"url": registry.url}},
        "Platforms": {
            SYSTEM: {
                "mungeSocketPath": str(munge.socket),
                "accesstype": "local",
                "admins": ["root"],
                "local": {"imageDir": str(images)},
            }
        },
    }
    path = workdir / "imagemanager.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def runtime_config(workdir: Path, gateway_url: str) -> Path:
    """udiRoot.conf for the runtime and shifterimg (root-owned, as `shifter` requires)."""
    path = workdir / "udiRoot.conf"
    path.write_text(
        "udiMount=/var/udiMount\n"
        "loopMount=/var/udiLoopMount\n"
        f"imagePath={workdir / 'images'}\n"
        "rootfsType=tmpfs\n"
        "populateEtcDynamically=1\n"
        f"system={SYSTEM}\n"
        f"imageGateway={gateway_url}\n"
        "defaultImageType=docker\n"
        "siteEnv=SHIFTER_RUNTIME=1\n"
    )
    path.chmod(0o644)
    return path


@contextmanager
def running_gateway(config: Path, port: int, log: Path) -> Iterator[str]:
    """`shifter-imagegw serve` on 127.0.0.1:port until the block ends; yields its URL."""
    url = f"http://127.0.0.1:{port}"
    gateway = proc.spawn(
        [_command("shifter-imagegw"), "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        output_path=log,
    )
    try:
        deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/", timeout=2):
                    break
            except OSError:
                if gateway.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"demo: the gateway did not start; see {log}") from None
                time.sleep(0.1)
        print(f"gateway at {url} (pid {gateway.pid})")
        yield url
    finally:
        proc.stop(gateway)


def run_demo(workdir: Path) -> None:
    with ExitStack() as services:
        _say("starting a private munged")
        munge = services.enter_context(MungeServer(workdir / "munge"))
        print(f"munged socket {munge.socket} (pid {munge.pid})")

        _say("starting a private registry (Debian's docker-registry) on a free loopback port")
        registry = services.enter_context(RegistryServer(workdir / "registry"))
        print(f"registry at {registry.url} (pid {registry.pid})")

        _say(f"building the {DEMO_IMAGE} demo image from scratch and pushing it")
        digest = push_image(catalog.build(DEMO_IMAGE), registry.url, DEMO_REPOSITORY, DEMO_TAG)
        print(f"pushed {registry.netloc}/{DEMO_REPOSITORY}:{DEMO_TAG} ({digest})")

        _say("starting the image gateway on SQLite")
        config = gateway_config(workdir, registry, munge)
        url = services.enter_context(
            running_gateway(config, _free_port(), workdir / "gateway" / "gateway.log")
        )

        env = {
            "SHIFTER_CONFIG": str(runtime_config(workdir, url)),
            "SHIFTER_MUNGE_SOCKET": str(munge.socket),
        }
        image = f"docker:{DEMO_REPOSITORY}:{DEMO_TAG}"
        _say(f"pulling the image through the gateway, as the ordinary user {DEMO_USER}")
        _run([_command("shifterimg"), "pull", image], env=env, user=DEMO_USER)
        _run([_command("shifterimg"), "images"], env=env, user=DEMO_USER)

        _say("running commands inside the image with shifter")
        _run([_command("shifter"), f"--image={image}", "cat", "/etc/os-release"],
             env=env, user=DEMO_USER)
        show_identity = (
            'echo "uid=$(id -u) SHIFTER_RUNTIME=$SHIFTER_RUNTIME"; grep Cap /proc/self/status'
        )
        _run([_command("shifter"), f"--image={image}", "sh", "-c", show_identity],
             env=env, user=DEMO_USER)
        _say("stopping the gateway, the registry and munged")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shifter-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the demo's files")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="shifter-demo-"))
    workdir.chmod(0o755)  # the demo user reads the config and the images below it
    try:
        run_demo(workdir)
    finally:
        if args.keep:
            print(f"demo files kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    _say("demo finished")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
