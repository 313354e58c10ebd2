"""Launch cost of the mpich module and of GPU support (issue 11: at most 2 ms over a launch
without them), the rows measured in turns.

    sudo .venv/bin/python -m bench.modules [--runs N] [--user NAME] [--json FILE]

Every row is `shifter --image=id:X /bin/true` as `--user` on the unprivileged (cold) path,
same image (bench.launch's), one site config each:

- `no modules`: no module configured;
- `mpich`: the host's MPICH prepared with `shifter-prep-libs` as copyPath, the
  siteEnvPrepend and siteEnv lines of docs/mpi.md, `defaultModules=mpich`, no userhook;
- `mpich + userhook`: the same with the ABI-check userhook (`bin/init.sh`), whose success
  for this image is remembered (runtime/site/hooks.py): the launches after the first skip it;
- `mpich + userhook, first launch`: the same with the user's remembered verdicts removed
  before each run (outside the timing): the hook's `/bin/sh` runs every time;
- `gpu configured, off`: the GPU keys of docs/gpu.md naming a fake driver (gcc-compiled stub
  libraries, mknod nodes in a work directory), CUDA_VISIBLE_DEVICES unset;
- `gpu, CUDA_VISIBLE_DEVICES=0`: the same with one GPU selected: the driver files bound
  under siteResources and the container's /dev built entry by entry (devtree.py).

Must run as root (mknod, the site files); nothing stays mounted (each launch's namespaces
die with it).
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.launch import BIN, build_image, site_config
from shifter.proc import run
from shifter.runtime.identity.userdir import user_dir_path
from tests.services.runtime_fixtures import remove_user_dirs

MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
STUB = "int cuInit(unsigned int flags) { (void)flags; return 0; }\n"
WARMUP = 3  # rounds not counted
FIRST_LAUNCH = "mpich + userhook, first launch"  # the remembered verdicts removed before each


def prepare_mpich(work: Path) -> Path:
    target = work / "mpich-module"
    run([BIN / "shifter-prep-libs", "--module", "mpich", "--mpich-abi-hook", target, MPICH])
    run(["chmod", "-R", "a+rX", target])
    return target


def fake_driver(work: Path) -> list[str]:
    """udiRoot.conf lines for a fake driver: a stub libcuda.so.1, two GPU nodes, nvidiactl."""
    driver = work / "gpu-driver"
    (driver / "dev").mkdir(parents=True)
    source = driver / "stub.c"
    source.write_text(STUB)
    library = driver / "libcuda.so.1"
    run(["gcc", "-shared", "-fPIC", "-o", library, source])
    for name, minor in (("nvidia0", 0), ("nvidia1", 1), ("nvidiactl", 255)):
        os.mknod(driver / "dev" / name, 0o666 | 0o020000, os.makedev(195, minor))
    run(["chmod", "-R", "a+rX", driver])
    return [
        "siteResources=/opt/shifter/site-resources",
        f"gpuLibraries={library}",
        f"gpuDevices={driver}/dev/nvidia0 {driver}/dev/nvidia1",
        f"gpuControlDevices={driver}/dev/nvidiactl",
    ]


def configs(work: Path, image_dir: Path) -> dict[str, Path]:
    mpich = prepare_mpich(work)
    module = [
        f"module_mpich_copyPath={mpich}",
        "module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64",
        "module_mpich_siteEnv=SHIFTER_MODULE_MPICH=1 "
        "UCX_MODULE_DIR=/opt/udiImage/modules/mpich/lib64",
        "defaultModules=mpich",
    ]
    extra = {
        "none": [],
        "mpich": module,
        "mpich-hook": [*module, "module_mpich_userhook=/opt/udiImage/modules/mpich/bin/init.sh"],
        "gpu": fake_driver(work),
    }
    found = {}
    for name, lines in extra.items():
        config = site_config(work, image_dir, name)
        with open(config, "a") as file:
            file.write("".join(f"{line}\n" for line in lines))
        found[name] = config
    return found


def commands(image_id: str, sites: dict[str, Path], user: str) -> dict[str, list[str]]:
    """Each row's argv: `setpriv` to the user, `env -i` with exactly the variables named."""
    account = pwd.getpwnam(user)
    as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
               "--init-groups", "env", "-i", f"USER={user}", "PATH=/usr/bin:/bin"]  # fmt: skip

    def launch(site: str, *env: str) -> list[str]:
        return [*as_user, *env, f"SHIFTER_CONFIG={sites[site]}", str(BIN / "shifter"),
                f"--image=id:{image_id}", "/bin/true"]  # fmt: skip

    return {
        "no modules": launch("none"),
        "mpich": launch("mpich"),
        "mpich + userhook": launch("mpich-hook"),
        FIRST_LAUNCH: launch("mpich-hook"),
        "gpu configured, off": launch("gpu"),
        "gpu, CUDA_VISIBLE_DEVICES=0": launch("gpu", "CUDA_VISIBLE_DEVICES=0"),
    }


def forget_verdicts(user: str) -> None:
    """Remove the user's remembered userhook verdicts (runtime/site/hooks.py)."""
    directory = Path(user_dir_path(pwd.getpwnam(user).pw_uid))
    for path in directory.glob("userhook-*"):
        path.unlink()


def interleaved(rows: dict[str, list[str]], runs: int, user: str
                ) -> dict[str, list[tuple[float, float]]]:  # fmt: skip
    """(wall ms, CPU ms) of each run, the rows taking turns run by run: a machine whose load
    drifts (a shared one) then weighs on every row alike, which hyperfine's one-row-after-
    another cannot give. CPU: user + system of the child tree (getrusage)."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rows}
    for round_number in range(runs + WARMUP):
        for name, argv in rows.items():
            if name == FIRST_LAUNCH:
                forget_verdicts(user)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = (time.perf_counter() - started) * 1000
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if done.returncode != 0:
                raise SystemExit(f"bench.modules: {name} fails: {done.stderr.decode().strip()}")
            cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
            if round_number >= WARMUP:
                samples[name].append((wall, cpu))
    return samples


def table(samples: dict[str, list[tuple[float, float]]]) -> str:
    def stats(name: str) -> tuple[float, float, float]:
        walls = [wall for wall, _ in samples[name]]
        cpus = [cpu for _, cpu in samples[name]]
        return statistics.median(walls), min(walls), statistics.median(cpus)

    base = stats("no modules")
    lines = [
        f"Load average: {os.getloadavg()[0]:.2f}.",
        "",
        "| launch | median (ms) | min (ms) | CPU median (ms) | median − no modules "
        "| min − no modules | CPU − no modules |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in samples:
        median, low, cpu = stats(name)
        lines.append(f"| {name} | {median:.1f} | {low:.1f} | {cpu:.1f} | {median - base[0]:+.1f} "
                     f"| {low - base[1]:+.1f} | {cpu - base[2]:+.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--user", default="shifterdemo")
    parser.add_argument("--json", type=Path, help="also write every sample (wall, CPU ms) here")
    args = parser.parse_args()
    if os.getuid() != 0:
        print("bench.modules: run as root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shifter-bench-modules-") as name:
        work = Path(name)
        work.chmod(0o755)
        _, image_id, source, _ = build_image(work)
        sites = configs(work, work / "images")
        try:
            samples = interleaved(commands(image_id, sites, args.user), args.runs, args.user)
        finally:
            remove_user_dirs(args.user)  # the remembered verdicts, the namespace record
        if args.json:
            args.json.write_text(json.dumps(samples))
        print(f"Image: {source}. {args.runs} runs per row, interleaved.")
        print(table(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
