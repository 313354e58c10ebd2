"""Launch cost of the mpich module and of GPU support (issue 11: at most 2 ms over a launch
without them), in one hyperfine run.

    sudo .venv/bin/python -m bench.modules [--runs N] [--user NAME] [--json FILE]

Every row is `shifter --image=id:X /bin/true` as `--user` on the unprivileged (cold) path,
same image (bench.launch's), one site config each:

- `no modules`: no module configured;
- `mpich`: the host's MPICH prepared with `shifter-prep-libs` as copyPath, the
  siteEnvPrepend and siteEnv lines of docs/mpi.md, `defaultModules=mpich`, no userhook;
- `mpich + userhook`: the same with the ABI-check userhook (`bin/init.sh`: a `/bin/sh`
  started before the command, and the import of subprocess for it);
- `gpu configured, off`: the GPU keys of docs/gpu.md naming a fake driver (gcc-compiled stub
  libraries, mknod nodes in a work directory), CUDA_VISIBLE_DEVICES unset;
- `gpu, CUDA_VISIBLE_DEVICES=0`: the same with one GPU selected: the driver files bound
  under siteResources and the container's /dev built entry by entry (devtree.py).

Must run as root (mknod, the site files); nothing stays mounted (each launch's namespaces
die with it).
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.launch import BIN, build_image, hyperfine, site_config
from shifter.proc import run

MPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
STUB = "int cuInit(unsigned int flags) { (void)flags; return 0; }\n"
NOTHING = "true"


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
        "module_mpich_siteEnv=SHIFTER_MODULE_MPICH=1 UCX_POSIX_USE_PROC_LINK=n",
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


def commands(image_id: str, sites: dict[str, Path], user: str) -> dict[str, tuple[str, str]]:
    account = pwd.getpwnam(user)
    as_user = (
        f"setpriv --reuid={account.pw_uid} --regid={account.pw_gid} --init-groups "
        f"env USER={user} PATH=/usr/bin:/bin"
    )

    def launch(site: str, env: str = "") -> str:
        return (f"{as_user} {env}SHIFTER_CONFIG={sites[site]} {BIN}/shifter "
                f"--image=id:{image_id} /bin/true")  # fmt: skip

    return {
        "no modules": (launch("none"), NOTHING),
        "mpich": (launch("mpich"), NOTHING),
        "mpich + userhook": (launch("mpich-hook"), NOTHING),
        "gpu configured, off": (launch("gpu"), NOTHING),
        "gpu, CUDA_VISIBLE_DEVICES=0": (launch("gpu", "CUDA_VISIBLE_DEVICES=0 "), NOTHING),
    }


def table(results: dict[str, dict]) -> str:
    base = results["no modules"]
    lines = [
        f"Load average: {os.getloadavg()[0]:.2f}.",
        "",
        "| launch | mean (ms) | median (ms) | σ (ms) | min (ms) | CPU (ms) "
        "| median − no modules (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        mean, median, sd, low = (result[key] * 1000 for key in ("mean", "median", "stddev", "min"))
        cpu = (result["user"] + result["system"]) * 1000
        extra = median - base["median"] * 1000
        lines.append(f"| {name} | {mean:.1f} | {median:.1f} | {sd:.1f} | {low:.1f} | {cpu:.1f} "
                     f"| {extra:+.1f} |")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--user", default="shifterdemo")
    parser.add_argument("--json", type=Path, help="also write hyperfine's JSON here")
    args = parser.parse_args()
    if os.getuid() != 0:
        print("bench.modules: run as root", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shifter-bench-modules-") as name:
        work = Path(name)
        work.chmod(0o755)
        _, image_id, source, _ = build_image(work)
        sites = configs(work, work / "images")
        # A launch that fails would only be timed as a failure: check each once first.
        for row, (command, _) in commands(image_id, sites, args.user).items():
            done = subprocess.run(command, shell=True, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"bench.modules: {row} fails: {done.stderr.strip()}", file=sys.stderr)
                return 1
        results = hyperfine(commands(image_id, sites, args.user), args.runs,
                            args.json or work / "hyperfine.json")  # fmt: skip
        print(f"Image: {source}.")
        print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
