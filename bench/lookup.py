"""Launch and lookup latency with a local image gateway: `shifter --image=docker:TAG`
against `--image=id:ID` of the same image, and `shifterimg lookup` / `images`.

    sudo .venv/bin/python -m bench.lookup [--rounds N] [--user NAME] [--json FILE]

Starts a private munged, a registry holding the busybox catalog image and `shifter-imagegw
serve` (SQLite, one server process), pulls the image (READY), writes a site (udiMount,
loopMount, a root-owned udiRoot.conf naming the gateway and its image directory), then
runs every command once per round, in a new random order each round (interleaved, so that
the machine's drift hits every row alike), as `--user` through `setpriv ... env`:

- `python -I -S -c pass`: the interpreter's own start-up, the floor of any Python launcher;
- `shifter --image=id:ID true` and `shifter --image=docker:TAG true`: the cold unprivileged
  launch (squashfuse) with and without the lookup;
- `shifterimg lookup TAG` and `shifterimg images`: what workflow tools call in loops.

Each run's wall time (from spawn to exit) and CPU time (user + system of the command and
the children it waited for: squashfuse, detached, is not among them) are recorded; the
report gives median, mean, minimum and median CPU per row, the load average before and
after, and the goals of issue 13: docker ≤ id + 10 ms, shifterimg lookup and images
≤ 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench import machine, run_reporting_errors
from bench.gateway_server import ServerProcess, gateway_config
from shifter.devtools.munged import MungeServer
from shifter.devtools.registry import RegistryServer
from shifter.gwclient.client import GatewayClient
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image

SYSTEM = "bench"
REPOSITORY, TAG = "bench/busybox", "v1"
BIN = Path(sys.executable).parent
GOAL_DOCKER_OVER_ID_MS = 10.0
GOAL_SHIFTERIMG_MS = 20.0


def write_site(work: Path, image_dir: Path, gateway: str) -> Path:
    work.mkdir(mode=0o755)
    for name in ("udiMount", "loopMount"):
        (work / name).mkdir(mode=0o755)
    config = work / "udiRoot.conf"
    config.write_text(
        f"udiMount={work}/udiMount\nloopMount={work}/loopMount\nimagePath={image_dir}\n"
        f"rootfsType=tmpfs\npopulateEtcDynamically=1\nsystem={SYSTEM}\n"
        f"imageGateway={gateway}\ngatewayTimeout=30\n"
    )
    config.chmod(0o644)
    return config


def commands(user: str, config: Path, munge_socket: Path, image_id: str) -> dict[str, list[str]]:
    account = pwd.getpwnam(user)
    as_user = [
        "setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--init-groups",
        "env", "-i", f"USER={user}", "PATH=/usr/bin:/bin", f"SHIFTER_CONFIG={config}",
        f"SHIFTER_MUNGE_SOCKET={munge_socket}", f"HOME={tempfile.gettempdir()}",
    ]  # fmt: skip
    tag = f"{REPOSITORY}:{TAG}"
    return {
        "python -I -S -c pass": [*as_user, sys.executable, "-I", "-S", "-c", "pass"],
        "shifter --image=id:ID true": [*as_user, str(BIN / "shifter"), f"--image=id:{image_id}",
                                       "true"],
        "shifter --image=docker:TAG true": [*as_user, str(BIN / "shifter"),
                                            f"--image=docker:{tag}", "true"],
        "shifterimg lookup TAG": [*as_user, str(BIN / "shifterimg"), "lookup", tag],
        "shifterimg images": [*as_user, str(BIN / "shifterimg"), "images"],
    }  # fmt: skip


def timed(argv: Sequence[str]) -> tuple[float, float]:
    """One run: wall and CPU seconds (fails loudly on a non-zero exit)."""
    started = time.perf_counter()
    pid = os.posix_spawnp(argv[0], list(argv), os.environ,
                          file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(named: dict[str, list[str]], rounds: int, warmup: int) -> dict[str, dict]:
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in named}
    order = list(named)
    for number in range(warmup + rounds):
        random.shuffle(order)
        for name in order:
            result = timed(named[name])
            if number >= warmup:
                samples[name].append(result)
    report = {}
    for name, runs in samples.items():
        walls = [wall * 1000 for wall, _ in runs]
        cpus = [cpu * 1000 for _, cpu in runs]
        report[name] = {
            "median": statistics.median(walls), "mean": statistics.fmean(walls),
            "min": min(walls), "cpu": statistics.median(cpus), "runs": len(runs),
        }  # fmt: skip
    return report


def print_report(report: dict[str, dict], load_before: str, load_after: str, rounds: int) -> None:
    print(f"\n{rounds} interleaved rounds; load average before {load_before}, after "
          f"{load_after}\n")
    print("| command | median (ms) | mean (ms) | min (ms) | CPU median (ms) | wall - CPU (ms) |")
    print("|---|---|---|---|---|---|")
    for name, row in report.items():
        print(f"| {name} | {row['median']:.1f} | {row['mean']:.1f} | {row['min']:.1f} | "
              f"{row['cpu']:.1f} | {row['median'] - row['cpu']:.1f} |")
    docker = report["shifter --image=docker:TAG true"]["median"]
    by_id = report["shifter --image=id:ID true"]["median"]
    print(f"\n- docker: launch - id: launch: {docker - by_id:+.1f} ms (goal "
          f"≤ +{GOAL_DOCKER_OVER_ID_MS:g})")
    for name in ("shifterimg lookup TAG", "shifterimg images"):
        print(f"- {name}: {report[name]['median']:.1f} ms (goal ≤ {GOAL_SHIFTERIMG_MS:g})")


def benchmark(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-lookup-", dir="/tmp"))
    work.chmod(0o755)
    try:
        with (MungeServer(work / "munge") as munged,
              RegistryServer(work / "registry") as registry):
            push_image(catalog.build("busybox"), registry.url, REPOSITORY, TAG)
            gateway = work / "gateway"
            config = gateway_config(gateway, store_url=f"sqlite:///{work}/gateway.sqlite",
                                    system=SYSTEM, munge_socket=str(munged.socket),
                                    registry_netloc=registry.netloc, registry_url=registry.url)
            with ServerProcess(config, work / "gateway.log", workers=1) as server:
                client = GatewayClient([server.url], SYSTEM, munge_socket=str(munged.socket))
                record = client.pull_and_wait("docker", f"{REPOSITORY}:{TAG}")
                site = write_site(work / "site", gateway / "images", server.url)
                named = commands(args.user, site, munged.socket, str(record.id))
                load_before = machine.load_average()
                os.chdir(work)  # a directory the container has: no note about the cwd
                report = measure(named, args.rounds, args.warmup)
                load_after = machine.load_average()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_report(report, load_before, load_after, args.rounds)
    if args.json is not None:
        args.json.write_text(json.dumps({"load_before": load_before, "load_after": load_after,
                                         "rows": report}, indent=1) + "\n")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lookup", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--user", default="shifterdemo", help="account the commands run as")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: benchmark(args))


if __name__ == "__main__":
    sys.exit(main())
