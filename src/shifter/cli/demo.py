"""The README's demo: the whole path from a registry to an image, on embedded defaults.

Run by `scripts/demo.sh` (as root, after `scripts/install.sh`). It starts a private registry
on a free loopback port, builds the busybox demo image from scratch and pushes it, then pulls
and converts it with the project's own commands, exactly as a user or admin would type them.
Everything it starts is stopped before it returns; its files live in one temp directory,
removed at the end unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from shifter import proc
from shifter.devtools.registry import RegistryServer
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image

DEMO_IMAGE = "busybox"
DEMO_REPOSITORY = "demo/busybox"
DEMO_TAG = "latest"


def _say(step: str) -> None:
    print(f"==> {step}", flush=True)


def _command(name: str) -> str:
    """The project's own command from the venv this module runs in."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run(argv: Sequence[str]) -> str:
    print("$ " + " ".join(argv), flush=True)
    output = proc.run(argv).stdout.decode()
    sys.stdout.write(output)
    return output


def run_demo(workdir: Path) -> None:
    registry_dir = workdir / "registry"
    images_dir = workdir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)

    _say("starting a private registry (Debian's docker-registry) on a free loopback port")
    with RegistryServer(registry_dir) as registry:
        print(f"registry at {registry.url} (pid {registry.pid})")

        _say(f"building the {DEMO_IMAGE} demo image from scratch and pushing it")
        started = time.monotonic()
        digest = push_image(catalog.build(DEMO_IMAGE), registry.url, DEMO_REPOSITORY, DEMO_TAG)
        print(f"pushed {registry.netloc}/{DEMO_REPOSITORY}:{DEMO_TAG} ({digest}) "
              f"in {time.monotonic() - started:.2f} s")

        _say("pulling and converting it to squashfs with shifter-imagegw convert")
        reference = f"{registry.netloc}/{DEMO_REPOSITORY}:{DEMO_TAG}"
        output = _run([
            _command("shifter-imagegw"), "convert", "--insecure",
            "--cache", str(workdir / "cache"), reference, str(images_dir),
        ])
        image_id = output.strip().splitlines()[-1]

    _say("the image on disk")
    for path in sorted(images_dir.iterdir()):
        print(f"{path.stat().st_size:>10}  {path.name}")
    print((images_dir / f"{image_id}.meta").read_text(), end="")
    _say("/etc/os-release inside the image")
    _run(["unsquashfs", "-cat", str(images_dir / f"{image_id}.squashfs"), "etc/os-release"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shifter-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the demo's files")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="shifter-demo-"))
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
