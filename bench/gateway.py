"""Image gateway benchmark: lookups per second and pull latency with real munge credentials.

    python -m bench.gateway [--seconds S] [--connections N] [--stores sqlite,postgresql]
                            [--workers 1,2] [--json FILE]

Starts a private munged, a registry holding the busybox catalog image, a private PostgreSQL
server, and `shifter-imagegw serve` on each metadata store with each number of server
processes (`--workers`), pulls the image through the gateway (READY), and measures, one
configuration after the other:

- one client, one request at a time (keep-alive, a new credential each): lookup and pull
  of the READY image: the latency floor;
- wrk with N connections (64) for S seconds, every request carrying a credential of its
  own (minted just before, munge's TTL being 300 s): lookups on keep-alive connections,
  lookups each on a new connection (`Connection: close`, as shifterimg and the runtime
  send them), and pulls of the READY image; each run follows a 3 s warm-up whose rate
  sizes the batch of credentials.

The load generator shares the machine's cores with the gateway, munged and the store, so
the CPU time of each is reported beside the rates. Prints a Markdown table (paste it into
docs/performance.md) and the goals of issue 4. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import machine, run_reporting_errors
from bench.gateway_load import CpuMeter, Latencies, LoadResult, mint, probe, run_wrk
from bench.gateway_server import ServerProcess, gateway_config
from bench.postgres import PostgresServer
from shifter.devtools.munged import MungeServer
from shifter.devtools.registry import RegistryServer
from shifter.gwclient.client import GatewayClient
from shifter.gwclient.urls import api_path
from shifter.munge.libmunge import Munge
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from shifter.proc import run

SYSTEM = "bench"
REPOSITORY, TAG = "bench/busybox", "v1"
STORES = ("sqlite", "postgresql")
DEFAULT_SECONDS = 20.0
WARMUP_S = 3.0
DEFAULT_CONNECTIONS = 64
PROBE_COUNT = 300
# Credentials minted for the warm-up: more than the gateway can use in WARMUP_S. The
# measured run gets the warm-up's rate times its length, with this margin.
WARMUP_CREDENTIALS = 30_000
MARGIN = 1.5
BOOSTED_NICE = -20
METHODS = {"lookup": "GET", "pull": "POST"}
LOOKUP = "lookup"
# The wrk runs of each configuration: table row, request, a new connection per request
# (as shifterimg and the runtime send them: `Connection: close`).
LOAD = (
    (LOOKUP, "lookup", False),
    ("lookup, new connection each", "lookup", True),
    ("pull (READY)", "pull", False),
)
# Issue 4's goals.
GOAL_RATE, GOAL_P99_MS, GOAL_PULL_MS = 2000.0, 50.0, 20.0


@dataclass(frozen=True)
class Phase:
    """One wrk run of one configuration, with the CPU each part used meanwhile."""

    load: LoadResult
    cpu_s: dict[str, float]  # gateway, munged, store (PostgreSQL), wrk
    machine_cpu_s: float


@dataclass(frozen=True)
class Outcome:
    store: str
    workers: int
    lookup_probe: Latencies
    pull_probe: Latencies
    phases: dict[str, Phase]  # by LOAD's row names

    @property
    def lookups(self) -> Phase:
        return self.phases[LOOKUP]


class Bench:
    """The services of one benchmark run and the measurements on each configuration."""

    def __init__(self, args: argparse.Namespace, work: Path, munged: MungeServer,
                 registry: RegistryServer, postgres: PostgresServer | None) -> None:
        self.args = args
        self.work = work
        self.munged = munged
        self.registry = registry
        self.postgres = postgres
        self.munge = Munge(str(munged.socket))
        self.tag_path = {verb: api_path(verb, SYSTEM, "docker", f"{REPOSITORY}:{TAG}")
                         for verb in ("lookup", "pull")}

    def store_url(self, store: str) -> str:
        if store == "sqlite":
            return f"sqlite:///{self.work}/store/gateway.sqlite"
        assert self.postgres is not None
        return self.postgres.url("shifter_bench")

    def configuration(self, store: str, workers: int) -> Outcome:
        config = gateway_config(self.work / store, store_url=self.store_url(store),
                                system=SYSTEM, munge_socket=str(self.munged.socket),
                                registry_netloc=self.registry.netloc,
                                registry_url=self.registry.url)
        log = self.work / f"gateway-{store}-{workers}.log"
        with ServerProcess(config, log, workers=workers) as server:
            if self.args.boost:
                machine.boost(server.pid, BOOSTED_NICE)
            self.ensure_ready(server)
            lookup_probe = self.probe(server, "GET", "lookup")
            pull_probe = self.probe(server, "POST", "pull")
            roots = {"gateway": server.pid, "munged": self.munged.pid}
            if store == "postgresql":
                assert self.postgres is not None
                roots["store"] = self.postgres.pid
            phases = {
                row: self.phase(server, roots, verb, close=close, name=f"{store}-{workers}-{n}")
                for n, (row, verb, close) in enumerate(LOAD)
            }
        return Outcome(store, workers, lookup_probe, pull_probe, phases)

    def ensure_ready(self, server: ServerProcess) -> None:
        client = GatewayClient([server.url], SYSTEM, munge_socket=str(self.munged.socket))
        record = client.pull_and_wait("docker", f"{REPOSITORY}:{TAG}")
        print(f"bench: {server.url}: docker:{REPOSITORY}:{TAG} is {record.status} "
              f"({record.id})", flush=True)

    def probe(self, server: ServerProcess, method: str, verb: str) -> Latencies:
        credentials = [self.munge.encode() for _ in range(self.args.probe_count)]
        found = probe("127.0.0.1", server.port, method, self.tag_path[verb], credentials)
        print(f"bench:   one client, {verb}: p50 {found.p50_ms:.1f} ms, p99 "
              f"{found.p99_ms:.1f} ms, statuses {found.statuses}", flush=True)
        return found

    def phase(self, server: ServerProcess, roots: dict[str, int], verb: str, *, close: bool,
              name: str) -> Phase:
        method, path = METHODS[verb], self.tag_path[verb]
        warm = self._wrk(server, method, path, self.work / "creds" / f"{name}-warm",
                         WARMUP_CREDENTIALS, WARMUP_S, close)
        count = math.ceil(warm.per_second * self.args.seconds * MARGIN) + 1000
        directory = self.work / "creds" / name
        # Minted now: munge's default TTL is 300 s and the gateway refuses expired ones.
        mint(self.munge, count, directory, self.args.threads)
        meter = CpuMeter(roots)
        meter.start()
        load = self._run(server, method, path, directory, self.args.seconds, close)
        used, machine_cpu = meter.stop()
        used["wrk"] = load.wrk_cpu_s
        shutil.rmtree(directory, ignore_errors=True)
        how = ", new connection each" if close else ""
        print(f"bench:   {self.args.connections} clients, {verb}{how}: {load.per_second:,.0f}/s, "
              f"p50 {load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, errors {load.errors} "
              f"{dict(load.error_detail)}, CPU s: " +
              ", ".join(f"{k} {v:.1f}" for k, v in used.items()) +
              f", machine {machine_cpu:.1f} of {2 * load.seconds:.0f}", flush=True)
        if load.exhausted:
            print(f"bench:   warning: {load.exhausted} requests found no fresh credential",
                  flush=True)
        return Phase(load, used, machine_cpu)

    def _wrk(self, server: ServerProcess, method: str, path: str, directory: Path, count: int,
             seconds: float, close: bool) -> LoadResult:
        mint(self.munge, count, directory, self.args.threads)
        try:
            return self._run(server, method, path, directory, seconds, close)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _run(self, server: ServerProcess, method: str, path: str, directory: Path,
             seconds: float, close: bool) -> LoadResult:
        return run_wrk(server.url, method, path, directory, connections=self.args.connections,
                       threads=self.args.threads, seconds=seconds,
                       script=self.work / "credentials.lua", close=close)


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        **{name: version(name) for name in ("uvicorn", "fastapi", "starlette", "SQLAlchemy",
                                            "psycopg")},
        **{package: f"Debian {machine._package_version(package)}"
           for package in ("wrk", "postgresql-15", "munge")},
        "shifter": f"git {machine._git_revision()}",
    }


def benchmark(args: argparse.Namespace) -> int:
    machine.wait_for_idle(args.wait_idle, 0.5)
    session_nice = machine.autogroup_nice(os.getpid())
    load_before = machine.load_average()
    work = Path(tempfile.mkdtemp(prefix="shifter-bench-gateway-", dir="/tmp"))
    work.chmod(0o755)
    outcomes: list[Outcome] = []
    try:
        if args.boost:
            machine.boost(os.getpid(), BOOSTED_NICE)
        with (MungeServer(work / "munge") as munged,
              RegistryServer(work / "registry") as registry):
            push_image(catalog.build("busybox"), registry.url, REPOSITORY, TAG)
            postgres = PostgresServer(work / "postgres") if "postgresql" in args.stores else None
            try:
                if postgres is not None:
                    postgres.start()
                    run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                         "/usr/lib/postgresql/15/bin/createdb", "-h", "127.0.0.1", "-p",
                         str(postgres.port), "shifter_bench"])
                if args.boost:
                    for pid in (munged.pid, registry.pid, postgres and postgres.pid):
                        if pid:
                            machine.boost(pid, BOOSTED_NICE)
                bench = Bench(args, work, munged, registry, postgres)
                for store in args.stores:
                    for workers in args.workers:
                        print(f"bench: {store}, --workers {workers}", flush=True)
                        outcomes.append(bench.configuration(store, workers))
            finally:
                if postgres is not None:
                    postgres.stop()
    finally:
        machine.restore_autogroup(os.getpid(), session_nice)
        if args.keep_work:
            print(f"bench: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    header = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(),
        "load_before": load_before,
        "load_after": machine.load_average(),
        "command": " ".join(["scripts/bench.sh gateway", *args.argv]),
        "nice": os.getpriority(os.PRIO_PROCESS, 0) if not args.boost else BOOSTED_NICE,
        "versions": versions(),
    }
    print_report(header, outcomes, args)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {**header, "outcomes": [asdict(outcome) for outcome in outcomes]}, indent=1) + "\n")
        print(f"\nbench: raw results in {args.json}")
    return 0


def _cpu_cell(phase: Phase, seconds: float) -> str:
    parts = [f"{name} {100 * used / seconds:.0f}" for name, used in phase.cpu_s.items()]
    return ", ".join(parts) + f" (machine {100 * phase.machine_cpu_s / seconds:.0f})"


def print_report(header: dict[str, object], outcomes: Sequence[Outcome],
                 args: argparse.Namespace) -> None:
    print()
    print(f"Date: {header['date']}  ")
    print(f"Machine: {header['machine']}  ")
    print(f"Load average before / after: {header['load_before']} / {header['load_after']}  ")
    print(f"Command: `{header['command']}` (nice {header['nice']})  ")
    versions_ = header["versions"]
    assert isinstance(versions_, dict)
    print("Versions: " + "; ".join(f"{k} {v}" for k, v in versions_.items()))
    print()
    print(f"| store | server processes | requests | {args.connections} clients: requests/s "
          "| p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | errors | CPU % during the run "
          "(100 = one core) | one client: p50 / p99 (ms) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|")
    for outcome in outcomes:
        for row, verb, _ in LOAD:
            phase = outcome.phases[row]
            single = outcome.lookup_probe if verb == "lookup" else outcome.pull_probe
            load = phase.load
            print(f"| {outcome.store} | {outcome.workers} | {row} | {load.per_second:,.0f} | "
                  f"{load.p50_ms:.1f} | {load.p90_ms:.1f} | {load.p99_ms:.1f} | "
                  f"{load.max_ms:.0f} | {load.errors + single.errors} | "
                  f"{_cpu_cell(phase, load.seconds)} | "
                  f"{single.p50_ms:.1f} / {single.p99_ms:.1f} |")
    print()
    print("| goal | " + " | ".join(f"{o.store}, {o.workers}" for o in outcomes) + " |")
    print("|---|" + "---|" * len(outcomes))
    rows = (
        (f"lookups/s >= {GOAL_RATE:,.0f}", lambda o: o.lookups.load.per_second >= GOAL_RATE,
         lambda o: f"{o.lookups.load.per_second:,.0f}"),
        (f"lookup p99 < {GOAL_P99_MS:.0f} ms", lambda o: o.lookups.load.p99_ms < GOAL_P99_MS,
         lambda o: f"{o.lookups.load.p99_ms:.1f} ms"),
        ("no errors", lambda o: _errors(o) == 0, lambda o: str(_errors(o))),
        (f"pull of a READY image < {GOAL_PULL_MS:.0f} ms (one client, p99)",
         lambda o: o.pull_probe.p99_ms < GOAL_PULL_MS, lambda o: f"{o.pull_probe.p99_ms:.1f} ms"),
    )
    for title, met, value in rows:
        cells = [f"{'met' if met(o) else '**missed**'}: {value(o)}" for o in outcomes]
        print(f"| {title} | " + " | ".join(cells) + " |")


def _errors(outcome: Outcome) -> int:
    probes = outcome.lookup_probe.errors + outcome.pull_probe.errors
    return probes + sum(phase.load.errors for phase in outcome.phases.values())


def _list(allowed: Sequence[str]) -> object:
    def parse(text: str) -> list[str]:
        items = [item for item in text.split(",") if item]
        unknown = [item for item in items if item not in allowed]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
        return items

    return parse


def _counts(text: str) -> list[int]:
    try:
        counts = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of numbers") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("each must be at least 1")
    return counts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                        help=f"length of each measured wrk run (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--connections", type=int, default=DEFAULT_CONNECTIONS,
                        help=f"concurrent clients (default {DEFAULT_CONNECTIONS})")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--stores", type=_list(STORES), default=list(STORES),
                        help="comma-separated, from sqlite,postgresql (default: both)")
    parser.add_argument("--workers", type=_counts, default=[1, 2],
                        help="server processes to try, comma-separated (default 1,2)")
    parser.add_argument("--probe-count", type=int, default=PROBE_COUNT,
                        help=f"one-client requests per probe (default {PROBE_COUNT})")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the load average to fall "
                        "below 0.5 (a shared machine)")
    parser.add_argument("--no-boost", dest="boost", action="store_false",
                        help=f"run at the normal priority (default: nice {BOOSTED_NICE} for "
                        "the bench and every service it starts)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the run's directory (logs, store)")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args(argv)
    if args.seconds < 1 or args.connections < 1 or args.threads < 1:
        parser.error("--seconds, --connections and --threads must be at least 1")
    if args.connections < args.threads:
        parser.error("--connections must be at least --threads")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: run as root (PostgreSQL runs as its account, the gateway as root)",
              file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("bench: wrk not found: install Debian's wrk (scripts/install.sh --bench)",
              file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        return run_reporting_errors(lambda: benchmark(args))
    finally:
        print(f"bench: {time.monotonic() - started:.0f} s in all", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
