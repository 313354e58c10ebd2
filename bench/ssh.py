"""ssh between a job's nodes: the job's sshd in the container against a host sshd.

    sudo .venv/bin/python -m bench.ssh [--runs N] [--user NAME] [--json FILE]

On a private 3-node cluster (shifter.devtools.slurm, the tests' cluster) whose plugin runs
the job's sshd (`enable_sshd=1`, docs/sshd.md), in one `salloc --image=id:X -N 3
--exclusive`, taking turns `--runs` times each:

- `container`: on the first node, inside the job's container, `/opt/udiImage/bin/ssh
  <second node> true`: the udiImage's ssh to the second node's job sshd (its loopback
  address, port 1204), the job's RSA key, the container's ed25519 host key;
- `host`: on the host, Debian's `ssh` to a host sshd (Debian's, tests/services/
  sshd_fixtures.py: `UsePAM no` like the job's, an ed25519 host key) on 127.0.0.1, with
  the same RSA key (the job's, `~/.udiRoot/id_rsa.key`) and the same client options.

Both are timed the same way, by a shell around the one command (`date +%s%N` before and
after; the image holds Debian's `date` and C library next to busybox), so neither the
container's entry nor srun is counted. Printed: medians and interquartile ranges (ms), the
ratio container / host (issue 10's goal: at most 1.5) and the load average. Must run as
root; the jobs run as --user. The cluster and the sshd are stopped by PID, the work
directory removed.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.launch import BIN, site_config
from bench.slurm import as_user, quartiles, remove_node_records, user_env
from shifter.devtools.slurm import SlurmCluster
from shifter.wlm import plugin
from tests.services.mpich_fixtures import build_squashfs_image, image_entries
from tests.services.sshd_fixtures import running_sshd

GOAL = 1.5
SSH = "/opt/udiImage/bin/ssh"
# The container's /etc/ssh/ssh_config (udiImage/etc/ssh_config) as options, for the host's.
CLIENT_OPTIONS = ("-F", "none", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                  "-o", "BatchMode=yes")  # fmt: skip
TIMED = 'a=$(/usr/bin/date +%s%N); {command}; b=$(/usr/bin/date +%s%N); echo $((b - a))'
DRIVER = """\
import json, subprocess, sys
runs, container, host = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
samples = {"container": [], "host": []}
for _ in range(runs):
    for name, argv in (("container", container), ("host", host)):
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        samples[name].append(int(out.split()[-1]) / 1e9)
print(json.dumps(samples))
"""


def build_site(work: Path) -> tuple[Path, str]:
    """An image of busybox plus Debian's `date` (nanoseconds) and a site whose homes are in
    the container (the job's key is there): (config, image id)."""
    images = work / "images"
    images.mkdir(mode=0o755)
    entries = image_entries(Path("/usr/bin/date"), program="/usr/bin/date")
    image_id = build_squashfs_image(entries, images, work / "layers", "ssh")
    config = site_config(work, images, "site")
    with open(config, "a") as file:
        file.write("siteFs=/home:/home\n")
    return config, image_id


def job_key(cluster: SlurmCluster, config: Path, image_id: str, user: str, work: Path) -> Path:
    """The user's job key, made by a first job's submission if missing (as users get it)."""
    argv = ["sbatch", "--wait", "-o", "/dev/null", f"--image=id:{image_id}", "-N", "1",
            "--exclusive", "--wrap", "true"]  # fmt: skip
    subprocess.run(as_user(user, argv), env=user_env(cluster, config), cwd=work, check=True,
                   capture_output=True)  # fmt: skip
    return Path(pwd.getpwnam(user).pw_dir) / ".udiRoot" / "id_rsa.key"


def measure(cluster: SlurmCluster, config: Path, image_id: str, user: str, runs: int,
            work: Path) -> dict[str, list[float]]:  # fmt: skip
    key = job_key(cluster, config, image_id, user, work)
    first, second = cluster.nodes[:2]
    with running_sshd([Path(f"{key}.pub").read_text().strip()]) as server:
        container = ["srun", "-N", "1", "-w", first, str(BIN / "shifter"), "sh", "-c",
                     TIMED.format(command=f"{SSH} {second} true")]  # fmt: skip
        host_ssh = " ".join(["ssh", *CLIENT_OPTIONS, "-i", str(key), "-p", str(server.port),
                             f"{server.user}@{server.host}", "true"])  # fmt: skip
        host = ["sh", "-c", TIMED.format(command=host_ssh)]
        driver = work / "driver.py"
        driver.write_text(DRIVER)
        driver.chmod(0o644)
        argv = ["salloc", f"--image=id:{image_id}", "-N", "3", "--exclusive", "/usr/bin/python3",
                str(driver), str(runs), json.dumps(container), json.dumps(host)]  # fmt: skip
        cluster.wait_until_idle(timeout=120)
        result = subprocess.run(as_user(user, argv), env=user_env(cluster, config), cwd=work,
                                capture_output=True, text=True)  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"bench.ssh: the job failed: {result.stderr[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ssh", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="ssh of each kind")
    parser.add_argument("--user", default="shiftertest1")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if os.getuid() != 0:
        print("bench.ssh: run as root (the cluster, the host sshd)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-ssh-"))
    work.chmod(0o755)
    cluster = None
    try:
        config, image_id = build_site(work)
        plugstack = [f"{line} enable_sshd=1" for line in plugin.plugstack_lines(str(config))]
        cluster = SlurmCluster(work / "cluster", plugstack=plugstack,
                               slurm_lines=plugin.slurm_lines())  # fmt: skip
        with cluster:
            samples = measure(cluster, config, image_id, args.user, args.runs, work)
    finally:
        if cluster is not None:
            remove_node_records(cluster)
        shutil.rmtree(work, ignore_errors=True)
    summary = {name: quartiles(values) for name, values in samples.items()}
    print(f"{args.runs} runs each, interleaved, load average {os.getloadavg()[0]:.2f}")
    print("| ssh <node> true | median (ms) | IQR (ms) |")
    print("|---|---:|---|")
    for name, q in summary.items():
        print(f"| {name} | {q['median'] * 1000:.1f} | "
              f"{q['q1'] * 1000:.1f}-{q['q3'] * 1000:.1f} |")  # fmt: skip
    ratio = summary["container"]["median"] / summary["host"]["median"]
    print(f"container / host: {ratio:.2f} (goal <= {GOAL})")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
