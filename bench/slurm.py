"""Slurm: `srun shifter` in a prepared allocation, and the cost of --image at job start.

    sudo .venv/bin/python -m bench.slurm [--runs N] [--jobs N] [--user NAME] [--json FILE]

On a private 3-node cluster (shifter.devtools.slurm, the tests' cluster: munged,
slurmctld, three slurmd in their own UTS + mount namespaces on this one machine) loaded
with this installation's plugin (`shifter-slurm-conf`), and a site whose image is a
squashfs (the Debian minbase tree of the conversion benchmark when cached, else busybox):

1. **steps**: in one `salloc --image=id:X -N 3 --exclusive` (the prolog built the container
   on every node), `srun -N 3 shifter /bin/true` and `srun -N 3 /bin/true`, interleaved,
   `--runs` times each; wall time of each srun, measured by a driver running in the
   allocation.
2. **jobs**: `sbatch --image=id:X -N 3 --exclusive --wrap 'srun shifter true'` and the same
   job without `--image` (`srun true`), interleaved, `--jobs` times each, each submitted
   when every node is idle; submit-to-end is from just before sbatch to the job script's
   last line (a timestamp it writes: the epilog runs after). slurmctld allocates batch jobs
   on its scheduler's next pass (about once a second here, even with
   `batch_sched_delay=0`), so submit-to-end also holds up to a second of waiting for that
   pass, the same for both kinds; from allocation to end (slurmctld's "sched: Allocate"
   log line) leaves it out. The prolog's own time per node
   is what the plugin logged (`setupRoot ... in X s (prolog Y s)`: setupRoot alone, and the
   prolog from its start to its end, Python's start-up excluded).

Medians and interquartile ranges are printed (and written as JSON with --json). Must run
as root (the cluster); the jobs run as --user. Nothing is left behind: the cluster stops by
PID, /etc/hosts is restored, the work directory removed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.launch import build_image, site_config
from shifter.devtools.slurm import SlurmCluster
from shifter.wlm import plugin
from shifter.wlm.state import STATE_DIR

BIN = Path(sys.executable).parent
DRIVER = """\
import json, subprocess, sys, time
runs = int(sys.argv[1])
samples = {"srun shifter": [], "srun": []}
for _ in range(runs):
    for name, argv in (("srun shifter", ["srun", "-N", "3", "shifter", "/bin/true"]),
                       ("srun", ["srun", "-N", "3", "/bin/true"])):
        started = time.monotonic()
        subprocess.run(argv, check=True)
        samples[name].append(time.monotonic() - started)
print(json.dumps(samples))
"""


def remove_node_records(cluster: SlurmCluster) -> None:
    """The plugin's per-node record directories (shifter.wlm.state: /run/shifter-slurm/NODE),
    empty once every job's epilog ran: the cluster's node names are its own."""
    for node in cluster.nodes:
        with contextlib.suppress(OSError):
            (Path(STATE_DIR) / node).rmdir()


def quartiles(values: list[float]) -> dict[str, float]:
    q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return {"median": median, "q1": q1, "q3": q3, "n": len(values)}


def user_env(cluster: SlurmCluster, config: Path) -> dict[str, str]:
    return {**cluster.env(), "PATH": f"{BIN}:/usr/bin:/usr/sbin:/bin:/sbin",
            "SHIFTER_CONFIG": str(config)}  # fmt: skip


def as_user(user: str, argv: list[str]) -> list[str]:
    return ["/usr/sbin/runuser", "-u", user, "--", *argv]


def steps(cluster: SlurmCluster, config: Path, image: str, user: str, runs: int,
          work: Path) -> dict[str, list[float]]:  # fmt: skip
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    driver.chmod(0o644)
    argv = ["salloc", f"--image=id:{image}", "-N", "3", "--exclusive",
            "/usr/bin/python3", str(driver), str(runs)]  # fmt: skip
    result = subprocess.run(as_user(user, argv), env=user_env(cluster, config), cwd=work,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def _job_time(cluster: SlurmCluster, config: Path, user: str, work: Path, args: list[str],
              wrap: str, index: int) -> tuple[str, float, float]:  # fmt: skip
    """The job's id, when it was submitted and when its script ended (epoch seconds)."""
    cluster.wait_until_idle(timeout=120)
    stamp = work / f"end-{index}"
    wrapped = f"{wrap}; date +%s.%N > {stamp}"
    argv = ["sbatch", "--parsable", "-o", "/dev/null", *args, "-N", "3", "--exclusive",
            "--wrap", wrapped]  # fmt: skip
    started = time.time()
    result = subprocess.run(as_user(user, argv), env=user_env(cluster, config), cwd=work,
                            capture_output=True, text=True, check=True)  # fmt: skip
    while not stamp.exists() or not stamp.read_text().strip():
        time.sleep(0.01)
    return result.stdout.strip().split(";")[0], started, float(stamp.read_text())


def allocated_at(cluster: SlurmCluster) -> dict[str, float]:
    """Job id -> when slurmctld started it on its nodes (its log line, ms resolution)."""
    import datetime

    # The main scheduler logs "sched: Allocate JobId=N", the backfill scheduler
    # "sched/backfill: _start_job: Started JobId=N".
    pattern = re.compile(
        r"^\[([\d-]+T[\d:.]+)\] sched(?:: Allocate|/backfill: _start_job: Started) JobId=(\d+) ",
        re.MULTILINE,
    )
    text = (cluster.directory / "log" / "slurmctld.log").read_text(errors="replace")
    return {
        job: datetime.datetime.fromisoformat(stamp).timestamp()  # local time, as logged
        for stamp, job in pattern.findall(text)
    }


def jobs(cluster: SlurmCluster, config: Path, image: str, user: str, count: int,
         work: Path) -> dict[str, list[float]]:  # fmt: skip
    kinds = {"with --image": ([f"--image=id:{image}"], "srun shifter true"),
             "without": ([], "srun true")}  # fmt: skip
    runs: dict[str, list[tuple[str, float, float]]] = {name: [] for name in kinds}
    for index in range(count):
        for offset, (name, (args, wrap)) in enumerate(kinds.items()):
            run = _job_time(cluster, config, user, work, args, wrap, 2 * index + offset)
            runs[name].append(run)
    cluster.wait_until_idle(timeout=120)
    allocated = allocated_at(cluster)
    samples: dict[str, list[float]] = {}
    for name, done in runs.items():
        samples[name] = [end - start for _, start, end in done]
        samples[f"{name}, from allocation"] = [end - allocated[job] for job, _, end in done]
    return samples


def prolog_times(cluster: SlurmCluster) -> dict[str, list[float]]:
    pattern = re.compile(r"setupRoot on \S+ for job \d+ in ([\d.]+) s \(prolog ([\d.]+) s\)")
    setup, whole = [], []
    for path in (cluster.directory / "log").glob("slurmd-*.log"):
        for match in pattern.finditer(path.read_text(errors="replace")):
            setup.append(float(match.group(1)))
            whole.append(float(match.group(2)))
    return {"setupRoot": setup, "prolog": whole}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.slurm", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="sruns of each kind (>= 20)")
    parser.add_argument("--jobs", type=int, default=12, help="jobs of each kind")
    parser.add_argument("--user", default="shiftertest1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-slurm-"))
    work.chmod(0o1777)
    cluster = None
    try:
        _, image_id, source, _ = build_image(work)
        config = site_config(work, work / "images", "site")
        cluster = SlurmCluster(work / "cluster", plugstack=plugin.plugstack_lines(str(config)),
                               slurm_lines=plugin.slurm_lines()).start()  # fmt: skip
        results = {
            "image": source,
            "steps": steps(cluster, config, image_id, args.user, args.runs, work),
            "jobs": jobs(cluster, config, image_id, args.user, args.jobs, work),
        }
        results["per_node"] = prolog_times(cluster)
    finally:
        if cluster is not None:
            cluster.stop()
            remove_node_records(cluster)
        shutil.rmtree(work, ignore_errors=True)
    summary = {part: {name: quartiles(values) for name, values in results[part].items()}
               for part in ("steps", "jobs", "per_node")}  # fmt: skip
    print(f"image: {results['image']}")
    for part, rows in summary.items():
        for name, q in rows.items():
            print(
                f"{part:9} {name:34} median {q['median'] * 1000:8.1f} ms  "
                f"IQR {q['q1'] * 1000:.1f}-{q['q3'] * 1000:.1f} ms  n={q['n']}"
            )
    steps_ratio = summary["steps"]["srun shifter"]["median"] / summary["steps"]["srun"]["median"]
    job_rows = summary["jobs"]
    jobs_ratio = job_rows["with --image"]["median"] / job_rows["without"]["median"]
    allocated_ratio = (job_rows["with --image, from allocation"]["median"]
                       / job_rows["without, from allocation"]["median"])  # fmt: skip
    print(f"srun shifter / srun: {steps_ratio:.3f} (goal <= 1.10)")
    print(f"job with --image / without: {jobs_ratio:.3f} (from allocation: {allocated_ratio:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
