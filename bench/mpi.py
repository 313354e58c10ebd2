"""MPI inside the container with the injected library against the same program on the host,
one node, two ranks (issue 11's ratio: at most 1.05; the multi-node run needs Slurm).

    sudo .venv/bin/python -m bench.mpi [--rounds N] [--user NAME]

`bench/data/mpi_pingpong.c` (compiled with Debian's mpicc) reports the median one-way
ping-pong latency for 8 B and 1 MiB and the median 1 MiB allreduce. Rows, taking turns
round by round, all started by Debian's `mpiexec -n 2` (hydra) as `--user`:

- `host`: the program on the host, UCX's defaults;
- `host, no CMA`: the same with `UCX_POSIX_USE_PROC_LINK=n UCX_TLS=^cma`: what ranks in
  separate user namespaces were left with (no process_vm_readv between them), for scale;
- `host, one user namespace`: both ranks in one new user namespace (`unshare --user
  --map-current-user mpiexec ...`): what ranks sharing one namespace would get;
- `container`: `shifter --image=id:X pingpong` per rank, the image built with
  `shifter.ocibuild` holding the program and its own libmpich, the host's MPICH injected
  by the mpich module (prepared with `shifter-prep-libs`, UCX's CMA plugin included, the
  siteEnv pointing `UCX_MODULE_DIR` at it); each rank builds its own (unprivileged)
  container, the ranks sharing the user's namespace on the node (runtime/identity/sharedns.py):
  UCX's defaults;
- `container, setupRoot`: the same after `setupRoot -u USER id X` (as the Slurm prolog
  does): the ranks enter that container and join its user namespace (runtime/identity/jobns.py),
  UCX's defaults.

Each figure is the median over the rounds of the program's own medians.
"""

from __future__ import annotations

import argparse
import os
import pwd
import statistics
import subprocess
import sys
from pathlib import Path

from bench.launch import BIN, site_config
from tests.services.mpich_fixtures import (
    UCX_CMA,
    build_squashfs_image,
    image_entries,
    prepare_module,
    shared_temp_dir,
)
from tests.services.runtime_fixtures import remove_user_dirs

SOURCE = Path(__file__).parent / "data" / "mpi_pingpong.c"
METRICS = ("pingpong_8B", "pingpong_1MiB", "allreduce_1MiB")
NO_CMA = {"UCX_POSIX_USE_PROC_LINK": "n", "UCX_TLS": "^cma"}
MODULE_LINES = (
    "module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64",
    "module_mpich_siteEnv=SHIFTER_MODULE_MPICH=1 UCX_MODULE_DIR=/opt/udiImage/modules/mpich/lib64",
    "defaultModules=mpich",
)


def rows(work: Path, user: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    binary = work / "pingpong"
    subprocess.run(["mpicc", "-O2", "-o", binary, SOURCE], check=True)
    binary.chmod(0o755)
    images = work / "images"
    images.mkdir(mode=0o755)
    image_id = build_squashfs_image(
        image_entries(binary, program="/app/pingpong"), images, work / "layers", "pingpong"
    )
    module = prepare_module(work / "mpich-module", UCX_CMA)
    # Two sites: one where every rank builds its own container, one where setupRoot
    # built it (as the prolog does) and the ranks enter it.
    config, root_config = site_config(work, images, "site"), site_config(work, images, "root")
    for path in (config, root_config):
        with open(path, "a") as file:
            file.write(f"module_mpich_copyPath={module}\n")
            file.writelines(f"{line}\n" for line in MODULE_LINES)
    setup = [str(BIN / "setupRoot"), "-u", user, "id", image_id]
    subprocess.run(setup, env={"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(root_config)},
                   check=True)  # fmt: skip
    account = pwd.getpwnam(user)
    as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
               "--init-groups"]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "USER": user}
    launcher = ["mpiexec", "-n", "2"]
    mpiexec = [*as_user, *launcher]
    one_namespace = ["unshare", "--user", "--map-current-user"]
    shifter = [str(BIN / "shifter"), f"--image=id:{image_id}", "pingpong"]
    return {
        "host": ([*mpiexec, str(binary)], env),
        "host, no CMA": ([*mpiexec, str(binary)], {**env, **NO_CMA}),
        "host, one user namespace": ([*as_user, *one_namespace, *launcher, str(binary)], env),
        "container": ([*mpiexec, *shifter], {**env, "SHIFTER_CONFIG": str(config)}),
        "container, setupRoot": ([*mpiexec, *shifter], {**env, "SHIFTER_CONFIG": str(root_config)}),
    }


def measure(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"bench.mpi: {' '.join(argv)} failed: {done.stderr.strip()[-500:]}")
    values = dict(line.split() for line in done.stdout.splitlines())
    return {metric: float(values[metric]) for metric in METRICS}


def print_medians(results: dict[str, list[dict[str, float]]], rounds: int,
                  first_column: str) -> dict[str, dict[str, float]]:
    """Print each row's medians (µs) as a Markdown table, with the load; return them."""
    medians = {name: {m: statistics.median(r[m] for r in runs) for m in METRICS}
               for name, runs in results.items()}  # fmt: skip
    print(f"{rounds} rounds, load average {os.getloadavg()[0]:.2f}; µs, medians")
    print(f"| {first_column} | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for name, values in medians.items():
        print(f"| {name} | " + " | ".join(f"{values[m]:.2f}" for m in METRICS) + " |")
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--user", default="shifterdemo")
    args = parser.parse_args()
    if os.getuid() != 0:
        print("bench.mpi: run as root", file=sys.stderr)
        return 1
    with shared_temp_dir("shifter-bench-mpi-") as work:
        try:
            found = rows(work, args.user)
            results: dict[str, list[dict[str, float]]] = {name: [] for name in found}
            for _ in range(args.rounds):
                for name, (argv, env) in found.items():
                    results[name].append(measure(argv, env))
        finally:
            root_config = work / "root" / "udiRoot.conf"
            if root_config.exists():
                subprocess.run([str(BIN / "unsetupRoot")], check=False,
                               env={"PATH": "/usr/bin:/bin", "SHIFTER_CONFIG": str(root_config)})
            remove_user_dirs(args.user)  # the ranks' shared namespace record
    medians = print_medians(results, args.rounds, "row")
    for row, base in (("container", "host"), ("container, setupRoot", "host")):
        ratios = " | ".join(f"{medians[row][m] / medians[base][m]:.3f}" for m in METRICS)
        print(f"| {row} / {base} | {ratios} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

