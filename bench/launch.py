"""Launch latency: every way into one squashfs image, side by side in one hyperfine run.

    sudo .venv/bin/python -m bench.launch [--runs N] [--user NAME] [--json FILE]

Contenders (all start `/bin/true` in the same squashfs image):

- `floor`: as root, `unshare -m sh -c 'mount -o loop,ro -t squashfs IMG DIR && exec chroot
  DIR /bin/true'`: a kernel loop mount and a chroot, nothing else;
- `setupRoot`: as root, `setupRoot -u USER id X` (the privileged build of a job's
  container: loop device, mounts, /etc, the enter record), each run after an `unsetupRoot`;
  `setupRoot (-IS)`: the same through a launcher like `shifter`'s (`shifter.cli.launcher`:
  Python isolated and without `site`), written fresh here; `scripts/install.sh` now writes
  one for bin/setupRoot too, so the two rows differ only where that is pip's script;
- `unsetupRoot`: as root, its teardown, each run after a `setupRoot`;
- `shifter (enter)`: `shifter --image=id:X /bin/true` as the job's user while setupRoot's
  container exists: the fast way in (namespaces, chroot, privilege drop and check);
- `shifter (cold)`: the same command with another site config that has no setupRoot
  container: the whole unprivileged path (user and mount namespaces, squashfuse, the
  container tree, /etc, the privilege drop);
- `shifter (mount helper)`: the cold command with a site config whose
  `mountHelperSocket` names a `shifter-mountd` this benchmark runs (docs/mountd.md): the
  kernel's squashfs instead of squashfuse, the image kept mounted between launches (the
  helper's default, 60 s), so from the second launch on its page cache is warm;
  `shifter (mount helper, --keep 0)`: the same with a helper that keeps nothing, on a copy
  of the image file, so each launch decompresses what it runs (in the kernel) as the cold
  row does (in squashfuse);
- `ch-run`: `ch-run IMG -- /bin/true` as the same user (Charliecloud mounts squashfs with
  squashfuse too);
- `podman run --rm`: as root, the same tree imported as a local image, `--network=none`;
  with `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`, because runc otherwise sets
  the default (higher) limits, which a root without CAP_SYS_RESOURCE (as in this VM)
  cannot do; skipped with the reason when podman cannot run a container here;
- `python`: `python3 -I -S -c pass` with shifter's interpreter, as the user (through the
  same `setpriv` and `env` as the users' tools): the start-up no Python launcher can beat;
  `shifter --help`: that plus shifter's first imports.

The image is the Debian minbase tree of the conversion benchmark when it is cached
(/var/tmp/shifter-bench/rootfs/bookworm-minbase), else a busybox tree. hyperfine runs every
command with warm-up rounds and reports mean, median, standard deviation, minimum and CPU
time (user + system); the table gives each mean's ratio to the floor's, and the goals of
issue 13 (from the medians). Must run as root
(the floor mounts; the users' tools drop to `--user`). Nothing is left mounted: the floor's
namespace dies with it, and unsetupRoot runs at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import shifter
from shifter.cli.launcher import launcher_text
from shifter.image.meta import format_meta
from shifter.proc import run

CACHE = Path("/var/tmp/shifter-bench")
DEBIAN_TREE = CACHE / "rootfs" / "bookworm-minbase"
# ch-run binds these from the host: the image must have them.
CH_RUN_NEEDS = ("etc/hosts", "etc/resolv.conf", "etc/passwd", "etc/group")
PODMAN_IMAGE = "localhost/shifter-bench-launch"
PODMAN_LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
BIN = Path(sys.executable).parent
SRC = Path(shifter.__file__).resolve().parents[1]  # the directory holding the package
PURELIB = sysconfig.get_path("purelib")
MODULE = "shifter.cli.setuproot"
NOTHING = "true"  # the prepare step of commands that need none


def _busybox_tree(target: Path) -> Path:
    for directory in ("bin", "etc", "dev", "proc", "sys", "tmp", "home", "mnt", "var", "usr"):
        (target / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/busybox", target / "bin" / "busybox")
    for applet in ("sh", "true", "cat"):
        (target / "bin" / applet).symlink_to("busybox")
    return target


def build_image(work: Path) -> tuple[Path, str, str, Path]:
    """The squashfs image, its id, what it was built from, and that tree."""
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
    return image, image_id, source, tree


def site_config(work: Path, image_dir: Path, name: str) -> Path:
    """A site (udiMount, loopMount, udiRoot.conf) under `work/name`."""
    site = work / name
    for directory in (site, site / "udiMount", site / "loopMount"):
        directory.mkdir(mode=0o755)
    config = site / "udiRoot.conf"
    config.write_text(
        f"udiMount={site}/udiMount\nloopMount={site}/loopMount\nimagePath={image_dir}\n"
        "rootfsType=tmpfs\npopulateEtcDynamically=1\nmountUdiRootWritable=0\n"
    )
    config.chmod(0o644)
    return config


def start_helper(config: Path, keep: str) -> subprocess.Popen[bytes]:
    """A shifter-mountd for `config` (its socket's directory made here), once it serves."""
    env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(config)}
    helper = subprocess.Popen([BIN / "shifter-mountd", "--keep", keep], env=env,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    socket_path = config.parent / "run" / "mountd.sock"
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        if helper.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"shifter-mountd did not start for {config}")
        time.sleep(0.05)
    return helper


def podman_ready(tree: Path, work: Path) -> str | None:
    """Import the tree as a podman image; None when podman can run it, else why not."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/install.sh --bench installs it)"
    archive = work / "tree.tar"
    run(["tar", "-C", tree, "-cf", archive, "."])
    run(["podman", "import", "-q", archive, PODMAN_IMAGE])
    archive.unlink()
    probe = ["podman", "run", "--rm", "--network=none", *PODMAN_LIMITS, PODMAN_IMAGE, "/bin/true"]
    result = run(probe, check=False)
    if result.returncode != 0:
        return f"podman cannot run a container here: {result.stderr.decode().strip()[-300:]}"
    return None


def commands(
    work: Path, image: Path, image_id: str, configs: dict[str, Path], user: str, podman: bool
) -> dict[str, tuple[str, str]]:
    """name -> (command, its prepare step), in the order they run: setupRoot's last run
    leaves the container that `shifter (enter)` enters."""
    account = pwd.getpwnam(user)
    as_user = (
        f"setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --init-groups "
        f"env USER={user} PATH=/usr/bin:/bin"
    )
    job, cold = configs["job"], configs["cold"]
    setup = f"env SHIFTER_CONFIG={job} {BIN}/setupRoot -u {user} id {image_id}"
    isolated = work / "setupRoot-IS"
    isolated.write_text(launcher_text(sys.executable, str(SRC), PURELIB, MODULE))
    isolated.chmod(0o755)
    unsetup = f"env SHIFTER_CONFIG={job} {BIN}/unsetupRoot"
    record = job.parent / "udiMount" / "var" / "shifterEnter.dat"
    mnt = work / "floor-mnt"
    mnt.mkdir()
    found = {
        "floor": (
            f"unshare -m sh -c 'mount -n -o loop,ro -t squashfs {image} {mnt} "
            f"&& exec chroot {mnt} /bin/true'",
            NOTHING,
        ),
        "unsetupRoot": (unsetup, setup),
        "setupRoot": (setup, unsetup),
        "setupRoot (-IS)": (setup.replace(f"{BIN}/setupRoot", str(isolated)), unsetup),
        "shifter (enter)": (
            f"{as_user} SHIFTER_CONFIG={job} {BIN}/shifter --image=id:{image_id} /bin/true",
            f"sh -c 'test -s {record} || {setup}'",
        ),
        "shifter (cold)": (
            f"{as_user} SHIFTER_CONFIG={cold} {BIN}/shifter --image=id:{image_id} /bin/true",
            NOTHING,
        ),
        "shifter (mount helper)": (
            f"{as_user} SHIFTER_CONFIG={configs['helper']} {BIN}/shifter --image=id:{image_id} "
            "/bin/true",
            NOTHING,
        ),
        "shifter (mount helper, --keep 0)": (
            f"{as_user} SHIFTER_CONFIG={configs['helper0']} {BIN}/shifter "
            f"--image=id:{image_id} /bin/true",
            NOTHING,
        ),
        "python -I -S -c pass": (f"{as_user} {sys.executable} -I -S -c pass", NOTHING),
        "shifter --help": (f"{as_user} {BIN}/shifter --help", NOTHING),
    }
    if shutil.which("ch-run"):
        found["ch-run"] = (f"{as_user} ch-run {image} -- /bin/true", NOTHING)
    if podman:
        limits = " ".join(PODMAN_LIMITS)
        found["podman run --rm"] = (
            f"podman run --rm --network=none {limits} {PODMAN_IMAGE} /bin/true",
            NOTHING,
        )
    return found


def hyperfine(named: dict[str, tuple[str, str]], runs: int, export: Path) -> dict[str, dict]:
    argv = ["hyperfine", "-N", "--warmup", "5", "--runs", str(runs), "--export-json", export]
    for _, prepare in named.values():
        argv += ["--prepare", prepare]
    for name, (command, _) in named.items():
        argv += ["-n", name, command]
    run(argv, capture_stdout=False, timeout=3600)
    results = json.loads(export.read_text())["results"]
    return {result["command"]: result for result in results}


def table(results: dict[str, dict], source: str, skipped: list[str]) -> str:
    floor = results["floor"]["mean"]
    lines = [
        f"Image: {source}. Load average: {os.getloadavg()[0]:.2f}.",
        "",
        "| command | mean (ms) | median (ms) | σ (ms) | min (ms) | CPU (ms) | mean / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        mean, median, sd, low = (result[key] * 1000 for key in ("mean", "median", "stddev", "min"))
        lines.append(
            f"| {name} | {mean:.1f} | {median:.1f} | {sd:.1f} | {low:.1f} | {_cpu(result):.1f} "
            f"| {mean / 1000 / floor:.2f} |"
        )
    lines += ["", *_goals(results), *(f"Skipped: {reason}" for reason in skipped)]
    return "\n".join(lines)


def _cpu(result: dict) -> float:
    """Mean user + system CPU time (ms) of the command and its children: what a loaded
    machine inflates least (the wall clock also counts waiting for a core)."""
    return (result["user"] + result["system"]) * 1000


def _goals(results: dict[str, dict]) -> list[str]:
    """Issue 13's goals, from the medians (the mean of a loaded machine is the noisiest)."""

    def median(name: str) -> float | None:
        return results[name]["median"] * 1000 if name in results else None

    floor, python = median("floor"), median("python -I -S -c pass")
    setup, enter = median("setupRoot"), median("shifter (enter)")
    isolated = median("setupRoot (-IS)")
    cold, ch_run = median("shifter (cold)"), median("ch-run")
    goals = []
    if setup is not None and isolated is not None and floor:
        goals.append(
            f"- setupRoot / floor: {setup / floor:.2f}, with the -IS launcher "
            f"{isolated / floor:.2f} (goal at most 1.3)"
        )
    if enter is not None and python is not None:
        cpu = _cpu(results["shifter (enter)"]) - _cpu(results["python -I -S -c pass"])
        goals.append(
            f"- shifter (enter) - python: {enter - python:.1f} ms, CPU {cpu:.1f} ms "
            "(goal at most 5)"
        )
    helper = median("shifter (mount helper)")
    if helper is not None and ch_run:
        goals.append(f"- shifter (mount helper) / ch-run: {helper / ch_run:.2f} (goal at most "
                     "1.0, then 0.85)")  # fmt: skip
    if cold is not None and ch_run:
        cpu = _cpu(results["shifter (cold)"]) / _cpu(results["ch-run"])
        goals.append(
            f"- shifter (cold) / ch-run: {cold / ch_run:.2f}, CPU {cpu:.2f} (goal at most 1.0, "
            "then 0.85; squashfuse's CPU is not in ours, it is in ch-run's)"
        )
    return goals


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per command")
    parser.add_argument("--user", default="shifterdemo", help="account the users' tools run as")
    parser.add_argument("--json", type=Path, help="also write hyperfine's JSON here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the floor loop-mounts, setupRoot builds, the rest drop")
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-launch-", dir="/var/tmp"))
    configs: dict[str, Path] = {}
    helpers: list[subprocess.Popen[bytes]] = []
    podman = False
    imported = shutil.which("podman") is not None
    try:
        work.chmod(0o755)
        image, image_id, source, tree = build_image(work)
        configs = {name: site_config(work, image.parent, name) for name in ("job", "cold")}
        # The --keep 0 helper serves a copy of the image (another file: another loop
        # device and superblock), or the other helper's kept mount would warm it too.
        copies = work / "images-copy"
        copies.mkdir(mode=0o755)
        for path in image.parent.iterdir():
            shutil.copy(path, copies / path.name)
        for name, keep, images in (("helper", "60", image.parent), ("helper0", "0", copies)):
            configs[name] = site_config(work, images, name)
            with configs[name].open("a") as config:
                config.write(f"mountHelperSocket={work / name / 'run' / 'mountd.sock'}\n")
            helpers.append(start_helper(configs[name], keep))
        why_not = podman_ready(tree, work)
        podman = why_not is None
        export = args.json or work / "hyperfine.json"
        named = commands(work, image, image_id, configs, args.user, podman)
        results = hyperfine(named, args.runs, export)
        print(table(results, source, [why_not] if why_not else []))
    finally:
        for helper in helpers:
            helper.send_signal(signal.SIGTERM)
            helper.wait(timeout=30)
        if "job" in configs:
            env = {"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(configs["job"])}
            run([BIN / "unsetupRoot"], env=env, check=False)
        if imported:
            run(["podman", "rmi", "-f", PODMAN_IMAGE], check=False)
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
