"""Launch latency: `shifter --image=id:X /bin/true` (the unprivileged cold path) side by
side with the floor and with Charliecloud, on one squashfs image, in one hyperfine run.

    sudo .venv/bin/python -m bench.launch [--runs N] [--user NAME] [--json FILE]

Contenders (all start `/bin/true` in the same squashfs image):

- `floor`: as root, `unshare -m sh -c 'mount -o loop,ro -t squashfs IMG DIR && exec chroot
  DIR /bin/true'`: a kernel loop mount and a chroot, nothing else;
- `shifter`: `shifter --image=id:X /bin/true` as an ordinary user (setpriv), the whole
  unprivileged path (user and mount namespaces, squashfuse, the container tree, /etc,
  the privilege drop) with a site config that has no siteFs or modules;
- `ch-run`: `ch-run IMG -- /bin/true` as the same user (Charliecloud mounts squashfs with
  squashfuse too);
- `python`: `python3 -I -S -c pass` with shifter's interpreter: the start-up no Python
  launcher can beat; `shifter --help`: that plus shifter's first imports.

The image is the Debian minbase tree of the conversion benchmark when it is cached
(/var/tmp/shifter-bench/rootfs/bookworm-minbase), else a busybox tree. hyperfine runs every
command with warm-up rounds and reports mean, standard deviation and minimum; the table
gives each mean's ratio to the floor's. Must run as root (the floor mounts; the others drop
to `--user`). Nothing is left mounted: the floor's namespace dies with it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

from shifter.image.meta import format_meta
from shifter.proc import run

CACHE = Path("/var/tmp/shifter-bench")
DEBIAN_TREE = CACHE / "rootfs" / "bookworm-minbase"
# ch-run binds these from the host: the image must have them.
CH_RUN_NEEDS = ("etc/hosts", "etc/resolv.conf", "etc/passwd", "etc/group")


def _busybox_tree(target: Path) -> Path:
    for directory in ("bin", "etc", "dev", "proc", "sys", "tmp", "home", "mnt", "var", "usr"):
        (target / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", target / "bin" / "busybox")
    for applet in ("sh", "true", "cat"):
        (target / "bin" / applet).symlink_to("busybox")
    return target


def build_image(work: Path) -> tuple[Path, str, str]:
    """The squashfs image, its id, and what it was built from."""
    image_dir = work / "images"
    image_dir.mkdir(mode=0o755)
    if DEBIAN_TREE.is_dir():
        tree, source = DEBIAN_TREE, f"Debian bookworm minbase ({DEBIAN_TREE})"
    else:
        tree, source = _busybox_tree(work / "tree"), "busybox tree"
    image_id = hashlib.sha256(source.encode()).hexdigest()
    image = image_dir / f"{image_id}.squashfs"
    pseudo = [arg for name in CH_RUN_NEEDS if not (tree / name).exists()
              for arg in ("-p", f"/{name} f 644 0 0 true")]  # fmt: skip
    run(["mksquashfs", tree, image, "-noappend", "-all-root", "-no-xattrs", "-quiet",
         "-no-progress", "-comp", "gzip", *pseudo])  # fmt: skip
    image.chmod(0o644)
    text, _ = format_meta("squashfs", env=["PATH=/usr/bin:/bin"])
    (image_dir / f"{image_id}.meta").write_text(text)
    return image, image_id, source


def site_config(work: Path, image_dir: Path) -> Path:
    for name in ("udiMount", "loopMount"):
        (work / name).mkdir(mode=0o755)
    config = work / "udiRoot.conf"
    config.write_text(
        f"udiMount={work}/udiMount\nloopMount={work}/loopMount\nimagePath={image_dir}\n"
        "rootfsType=tmpfs\npopulateEtcDynamically=1\nmountUdiRootWritable=0\n"
    )
    config.chmod(0o644)
    return config


def commands(work: Path, image: Path, image_id: str, config: Path, user: str) -> dict[str, str]:
    account = pwd.getpwnam(user)
    as_user = (
        f"setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --init-groups "
        f"env USER={user} SHIFTER_CONFIG={config} PATH=/usr/bin:/bin"
    )
    mnt = work / "floor-mnt"
    mnt.mkdir()
    shifter = Path(sys.executable).parent / "shifter"
    found = {
        "floor": (
            f"unshare -m sh -c 'mount -n -o loop,ro -t squashfs {image} {mnt} "
            f"&& exec chroot {mnt} /bin/true'"
        ),
        "shifter": f"{as_user} {shifter} --image=id:{image_id} /bin/true",
        "python": f"{sys.executable} -I -S -c pass",
        "shifter --help": f"{as_user} {shifter} --help",
    }
    if shutil.which("ch-run"):
        found["ch-run"] = f"{as_user} ch-run {image} -- /bin/true"
    return found


def hyperfine(named: dict[str, str], runs: int, export: Path) -> dict[str, dict]:
    argv = ["hyperfine", "-N", "--warmup", "5", "--runs", str(runs), "--export-json", export]
    for name, command in named.items():
        argv += ["-n", name, command]
    run(argv, capture_stdout=False, timeout=3600)
    results = json.loads(export.read_text())["results"]
    return {result["command"]: result for result in results}


def table(results: dict[str, dict], source: str) -> str:
    floor = results["floor"]["mean"]
    lines = [
        f"Image: {source}. Load average: {os.getloadavg()[0]:.2f}.",
        "",
        "| command | mean (ms) | σ (ms) | min (ms) | mean / floor |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        mean, sd, low = (result[key] * 1000 for key in ("mean", "stddev", "min"))
        lines.append(f"| {name} | {mean:.1f} | {sd:.1f} | {low:.1f} | {mean / 1000 / floor:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per command")
    parser.add_argument("--user", default="shifterdemo", help="account the users' tools run as")
    parser.add_argument("--json", type=Path, help="also write hyperfine's JSON here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the floor loop-mounts, the rest drop to --user")
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-launch-", dir="/var/tmp"))
    try:
        work.chmod(0o755)
        image, image_id, source = build_image(work)
        config = site_config(work, image.parent)
        export = args.json or work / "hyperfine.json"
        results = hyperfine(commands(work, image, image_id, config, args.user), args.runs, export)
        print(table(results, source))
    finally:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
