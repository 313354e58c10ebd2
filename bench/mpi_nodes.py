"""MPI across the nodes of a private Slurm: the container (the injected mpich module) against
the same program on the host, on the same nodes, started by `srun --mpi=pmi2`.

    sudo .venv/bin/python -m bench.mpi_nodes [--rounds N] [--user NAME] [--json FILE]

The cluster is the tests' (shifter.devtools.slurm: three slurmd in their own UTS + mount
namespaces on this one machine, this installation's plugin); the image and the module are
bench.mpi's (`bench/data/mpi_pingpong.c` in an image built with `shifter.ocibuild`, the
host's MPICH prepared by `shifter-prep-libs` as the mpich module, `defaultModules = mpich`).
Rows, taking turns round by round, each one `srun` of its own:

- `host`: `srun --mpi=pmi2 pingpong` (UCX's defaults);
- `host, no CMA`: the same with `UCX_POSIX_USE_PROC_LINK=n UCX_TLS=^cma`;
- `private`: `srun --mpi=pmi2 shifter --image=id:X pingpong` in an allocation that may
  share its nodes: every rank builds its own unprivileged container, the ranks sharing the
  user's namespace on the machine (runtime/identity/sharedns.py): UCX's defaults;
- `setupRoot`: `srun --image=id:X --exclusive --mpi=pmi2 shifter pingpong`: the prolog
  built the container on each node and every rank enters it, joining the job's user
  namespace (shifter.runtime.identity.jobns): UCX's defaults, CMA included.

The module holds UCX's CMA transport plugin (`libuct_cma.so.0`, passed to
shifter-prep-libs like a library) and its siteEnv points `UCX_MODULE_DIR` at it.

Layouts: `2x1` (`-N 2 -n 2`, the ping-pong between two nodes) and `1x2` (`-N 1 -n 2`, two
ranks of one node). These nodes are one machine: UCX takes them for one host and uses
shared memory between them. The private containers of the two "nodes" share one /dev/shm
and so one user namespace (what one kernel gives); the setupRoot containers of two nodes
have one namespace per node, so `2x1 setupRoot` runs with CMA off. Each figure is the
median over the rounds of the program's own medians (µs). Also printed: the user
namespace (`/proc/self/ns/user`) of two ranks in the setupRoot container (one node) and
in private containers (one node; two nodes): one each, or one shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.launch import BIN, site_config
from bench.mpi import METRICS, MODULE_LINES, NO_CMA, print_medians
from bench.slurm import remove_node_records
from shifter.devtools.slurm import SlurmCluster
from shifter.wlm import plugin
from tests.services.mpich_fixtures import (
    UCX_CMA,
    build_squashfs_image,
    image_entries,
    prepare_module,
)
from tests.services.runtime_fixtures import remove_user_dirs

SOURCE = Path(__file__).parent / "data" / "mpi_pingpong.c"
LAYOUTS = {"2x1": ("-N", "2", "-n", "2"), "1x2": ("-N", "1", "-n", "2")}


def build_site(work: Path) -> tuple[Path, Path, str]:
    """The program, its image and a site with the mpich module: (binary, config, image)."""
    binary = work / "pingpong"
    subprocess.run(["mpicc", "-O2", "-o", binary, SOURCE], check=True)
    binary.chmod(0o755)
    images = work / "images"
    images.mkdir(mode=0o755)
    entries = image_entries(binary, program="/app/pingpong")
    image_id = build_squashfs_image(entries, images, work / "layers", "pingpong")
    module = prepare_module(work / "mpich-module", UCX_CMA)
    config = site_config(work, images, "site")
    with open(config, "a") as file:
        file.write(f"module_mpich_copyPath={module}\n")
        file.writelines(f"{line}\n" for line in MODULE_LINES)
    return binary, config, image_id


def rows(binary: Path, image_id: str) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Row name -> (srun arguments before the layout's, extra environment)."""
    srun = ["srun", "--mpi=pmi2"]
    return {
        "host": ([*srun, "--exclusive", str(binary)], {}),
        "host, no CMA": ([*srun, "--exclusive", str(binary)], NO_CMA),
        "private": ([*srun, str(BIN / "shifter"), f"--image=id:{image_id}", "pingpong"], {}),
        "setupRoot": (
            [*srun, f"--image=id:{image_id}", "--exclusive", str(BIN / "shifter"), "pingpong"],
            {},
        ),
    }


class Runner:
    def __init__(self, cluster: SlurmCluster, config: Path, user: str, work: Path) -> None:
        self.cluster, self.user, self.work = cluster, user, work
        self.env = {**cluster.env(), "PATH": f"{BIN}:/usr/bin:/usr/sbin:/bin:/sbin",
                    "SHIFTER_CONFIG": str(config)}  # fmt: skip

    def run(self, argv: list[str], extra: dict[str, str]) -> str:
        # Each srun starts on idle nodes (the last job's epilog done).
        self.cluster.wait_until_idle(timeout=120)
        full = ["/usr/sbin/runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(full, env={**self.env, **extra}, cwd=self.work,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"bench.mpi_nodes: {' '.join(argv)} failed: {done.stderr[-800:]}")
        return done.stdout

    def measure(self, argv: list[str], layout: tuple[str, ...], extra: dict[str, str]
                ) -> dict[str, float]:  # fmt: skip
        out = self.run([argv[0], *layout, *argv[1:]], extra)
        pairs = [line.split() for line in out.splitlines()]
        values = dict(pair for pair in pairs if len(pair) == 2 and pair[0] in METRICS)
        return {metric: float(values[metric]) for metric in METRICS}


def namespaces(runner: Runner, image_id: str) -> dict[str, list[str]]:
    """The user namespace of each of two ranks: in the setupRoot container of one node,
    in private containers on one node and on two."""
    found = {}
    for name, options in (
        ("setupRoot, 1x2", [f"--image=id:{image_id}", "--exclusive", "-N", "1", "-n", "2",
                            str(BIN / "shifter")]),
        ("private, 1x2", ["-N", "1", "-n", "2", str(BIN / "shifter"), f"--image=id:{image_id}"]),
        ("private, 2x1", ["-N", "2", "-n", "2", str(BIN / "shifter"), f"--image=id:{image_id}"]),
    ):  # fmt: skip
        # `sleep` keeps both alive together: a namespace is shared while a member runs.
        argv = ["srun", *options, "sh", "-c", "busybox readlink /proc/self/ns/user; sleep 1"]
        found[name] = sorted(runner.run(argv, {}).split())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.mpi_nodes", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--user", default="shiftertest1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if os.getuid() != 0:
        print("bench.mpi_nodes: run as root (the cluster)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-mpinodes-"))
    work.chmod(0o755)
    cluster = None
    try:
        binary, config, image_id = build_site(work)
        cluster = SlurmCluster(work / "cluster", plugstack=plugin.plugstack_lines(str(config)),
                               slurm_lines=plugin.slurm_lines()).start()  # fmt: skip
        runner = Runner(cluster, config, args.user, work)
        found = rows(binary, image_id)
        results: dict[str, list[dict[str, float]]] = {
            f"{layout} {name}": [] for layout in LAYOUTS for name in found
        }
        for _ in range(args.rounds):
            for layout, layout_args in LAYOUTS.items():
                for name, (row, extra) in found.items():
                    if layout == "2x1" and name == "setupRoot":
                        # Two of these "nodes" are one machine: UCX sees one host and
                        # would use shared memory between the two nodes' namespaces.
                        extra = {**extra, **NO_CMA}
                    results[f"{layout} {name}"].append(runner.measure(row, layout_args, extra))
        user_namespaces = namespaces(runner, image_id)
    finally:
        if cluster is not None:
            cluster.stop()
            remove_node_records(cluster)
        shutil.rmtree(work, ignore_errors=True)
        remove_user_dirs(args.user)  # the ranks' shared namespace record
    medians = print_medians(results, args.rounds, "layout, row")
    for layout in LAYOUTS:
        host = medians[f"{layout} host"]
        for row in ("private", "setupRoot"):
            ratios = " | ".join(f"{medians[f'{layout} {row}'][m] / host[m]:.3f}" for m in METRICS)
            print(f"| {layout} {row} / host | {ratios} |")
    for name, spaces in user_namespaces.items():
        shared = "one, shared" if len(set(spaces)) == 1 else "one each"
        print(f"user namespaces of two ranks, {name}: {spaces} ({shared})")
    if args.json:
        data = {"results": results, "medians": medians, "user_namespaces": user_namespaces}
        args.json.write_text(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
