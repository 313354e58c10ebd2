"""What sharing the user namespace of private containers costs a launch
(runtime/identity/sharedns.py).

    sudo .venv/bin/python -m bench.sharedns [--rounds N] [--user NAME]

`shifter --image=id:X /bin/true` as `--user` on the unprivileged (cold) path, bench.launch's
image, three ways, taking turns round by round (five launches each per round; the first
round not counted):

- `no user directory`: the user's directory (/dev/shm/.shifter-UID) made by root first, so
  shifter does not use it: a namespace of its own, as before sharedns.py;
- `make and record`: the directory usable, no container running: the launch takes the
  lock, finds no member, makes the namespace and records itself;
- `join`: the same with one container of the user's running (`busybox sleep`): the launch
  checks that one's namespace and joins it (setns).

Removes the user's directory before and after.
"""

from __future__ import annotations

import argparse
import os
import pwd
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.launch import BIN, build_image, site_config
from shifter.runtime.identity.userdir import user_dir_path

LAUNCHES = 5  # per row and round
ROWS = ("no user directory", "make and record", "join")


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall ms, CPU ms of the child tree) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd="/")
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--user", default="shifterdemo")
    args = parser.parse_args()
    if os.getuid() != 0:
        print("bench.sharedns: run as root", file=sys.stderr)
        return 1
    account = pwd.getpwnam(args.user)
    user_dir = Path(user_dir_path(account.pw_uid))
    samples: dict[str, list[tuple[float, float]]] = {row: [] for row in ROWS}
    with tempfile.TemporaryDirectory(prefix="shifter-bench-sharedns-") as name:
        work = Path(name)
        work.chmod(0o755)
        _, image_id, _, _ = build_image(work)
        config = site_config(work, work / "images", "site")
        as_user = ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                   "--init-groups", "env", "-i", f"USER={args.user}", "PATH=/usr/bin:/bin",
                   f"SHIFTER_CONFIG={config}", str(BIN / "shifter"),
                   f"--image=id:{image_id}"]  # fmt: skip
        try:
            for round_number in range(args.rounds + 1):
                for row in ROWS:
                    shutil.rmtree(user_dir, ignore_errors=True)
                    member = None
                    if row == "no user directory":
                        user_dir.mkdir(mode=0o755)  # root's: shifter leaves it alone
                    elif row == "join":
                        member = subprocess.Popen([*as_user, "busybox", "sleep", "600"], cwd="/")
                        time.sleep(0.5)
                        if member.poll() is not None:
                            raise SystemExit("bench.sharedns: the running container failed")
                    try:
                        for _ in range(LAUNCHES):
                            sample = timed([*as_user, "/bin/true"])
                            if round_number > 0:
                                samples[row].append(sample)
                    finally:
                        if member is not None:
                            member.kill()  # the container's process itself (exec in place)
                            member.wait()
        finally:
            shutil.rmtree(user_dir, ignore_errors=True)
    base = statistics.median(wall for wall, _ in samples[ROWS[0]])
    print(f"{args.rounds} rounds of {LAUNCHES} launches per row, load average "
          f"{os.getloadavg()[0]:.2f}; ms")  # fmt: skip
    print("| row | median | min | CPU median | median − no user directory |")
    print("|---|---|---|---|---|")
    for row, values in samples.items():
        walls = [wall for wall, _ in values]
        median = statistics.median(walls)
        cpu = statistics.median(c for _, c in values)
        print(f"| {row} | {median:.2f} | {min(walls):.2f} | {cpu:.2f} | {median - base:+.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
