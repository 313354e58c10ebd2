"""Image conversion benchmark: our pull-and-convert against mksquashfs and Charliecloud.

    python -m bench.convert [--quick | --runs N] [--images debian,synthetic] [--cache-dir DIR]
                            [--gzip-level N]

One run, side by side: every round runs each contender once on each input image, the
contenders' order rotating from round to round so that drift on this noisy disk hits all of
them alike; each is reported at its best of N rounds. Prints a Markdown table (paste it into
docs/performance.md) and the goals it is checked against. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bench import contenders, machine, report, run_reporting_errors
from bench.contenders import CHARLIECLOUD, FLOOR, OURS_COLD, OURS_WARM, Outcome, Setup
from bench.images import IMAGES, BenchImage, extract_tree, push
from bench.tls import self_signed
from shifter.devtools.registry import RegistryServer
from shifter.errors import ShifterError

DEFAULT_CACHE = Path("/var/tmp/shifter-bench")
DEFAULT_RUNS = 3
DEFAULT_GZIP_LEVEL = 9  # mksquashfs's, when no -Xcompression-level is given
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSY_LOAD = 0.5  # load average above which the run is flagged as noisy
# Niceness of the bench and everything it starts (registry, contenders) and of their
# autogroups: on a shared machine the scheduler then gives them the CPU ahead of other work
# (and, through the niceness, the best-effort I/O class's highest priority). Every contender
# gets the same.
BOOSTED_NICE = -20

Results = dict[tuple[str, str], list[Outcome]]  # (image key, contender) -> one per round


def clean_env(tmp: Path) -> dict[str, str]:
    """The contenders' environment: no pyenv shims before Debian's python3 (ch-image runs
    `/usr/bin/env python3`), no CA-bundle variables (they override requests' verify=False
    in ch-image), temporary files in the run's directory."""
    user = getpass.getuser()
    return {
        "PATH": SYSTEM_PATH,
        "HOME": os.environ.get("HOME", "/root"),
        "USER": user,
        "LOGNAME": user,
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp),
    }


def _round_order(round_number: int) -> list[str]:
    groups = [FLOOR, CHARLIECLOUD, OURS_COLD]
    shift = round_number % len(groups)
    return groups[shift:] + groups[:shift]


def _run_one(
    setup: Setup, image: BenchImage, contender: str, out: Path
) -> dict[str, Outcome]:
    out.mkdir(parents=True)
    if contender == FLOOR:
        return {FLOOR: contenders.floor(setup, image, out)}
    if contender == CHARLIECLOUD:
        return {CHARLIECLOUD: contenders.charliecloud(setup, image, out)}
    cold, warm = contenders.ours(setup, image, out)
    return {OURS_COLD: cold, OURS_WARM: warm}


def run_rounds(
    setup: Setup, images: Sequence[BenchImage], runs: int, work: Path
) -> tuple[Results, dict[str, dict[str, int]]]:
    results: Results = {}
    entries: dict[str, dict[str, int]] = {image.key: {} for image in images}
    for number in range(runs):
        for image in images:
            for contender in _round_order(number):
                out = work / "out" / f"r{number}-{image.key}-{contender}"
                try:
                    outcomes = _run_one(setup, image, contender, out)
                    for name, outcome in outcomes.items():
                        results.setdefault((image.key, name), []).append(outcome)
                        if number == 0:
                            entries[image.key][name] = contenders.entry_count(outcome.image_path)
                        print(
                            f"bench: round {number + 1}/{runs} {image.key:9} {name:12} "
                            f"{outcome.sample.wall_s:7.2f} s  "
                            f"{outcome.sample.max_rss_kib / 1024:6.0f} MiB  "
                            f"(waited for a CPU {outcome.sample.cpu_wait_s:.1f} s, "
                            f"others' CPU meanwhile {outcome.sample.others_cpu_s:.1f} s) "
                            f"{outcome.note}",
                            flush=True,
                        )
                finally:
                    contenders.clear(out)
    return results, entries


def summaries(results: Results, image: BenchImage) -> dict[tuple[str, str | None], report.Summary]:
    return {
        (contender, step): report.summarize(results[(image.key, contender)], step)
        for contender, step, _ in report.ROWS
    }


def print_report(
    images: Sequence[BenchImage],
    results: Results,
    entries: dict[str, dict[str, int]],
    header: dict[str, object],
    json_path: Path | None,
) -> None:
    print()
    print(f"Date: {header['date']}  ")
    print(f"Machine: {header['machine']}  ")
    print(f"Load average before / after: {header['load_before']} / {header['load_after']}  ")
    print(f"Command: `{header['command']}` (best of {header['runs']}, rounds interleaved, "
          f"nice {header['nice']}, gzip level {header['gzip_level']})  ")
    versions = header["versions"]
    assert isinstance(versions, dict)
    print("Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    raw: dict[str, object] = {}
    for image in images:
        by_row = summaries(results, image)
        print()
        print("\n".join(report.table(image.description, by_row, entries[image.key])))
        raw[image.key] = report.as_json(by_row)
    if json_path is not None:
        json_path.write_text(json.dumps({**header, "images": raw}, indent=1) + "\n")
        print(f"\nbench: raw results in {json_path}")


def at_gzip_level(setup: Setup, level: int, directory: Path) -> Setup:
    """`setup` with every contender compressing at gzip `level` (see contenders)."""
    tools = {name: shutil.which(name, path=SYSTEM_PATH) for name in ("mksquashfs", "ch-convert")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        raise ShifterError(f"{', '.join(missing)} not found on {SYSTEM_PATH}")
    directory.mkdir()
    config, ch_convert = contenders.gzip_level_tools(
        level, directory, mksquashfs=str(tools["mksquashfs"]), ch_convert=str(tools["ch-convert"])
    )
    return replace(setup, gzip_level=level, ours_config=config, ch_convert=ch_convert)


def benchmark(args: argparse.Namespace) -> int:
    cache: Path = args.cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    machine.check_tools({"PATH": SYSTEM_PATH})
    ours = contenders.ours_command()
    image_makers: list[Callable[[Path], BenchImage]] = [IMAGES[key] for key in args.images]
    images = [make(cache) for make in image_makers]
    machine.wait_for_idle(args.wait_idle, BUSY_LOAD)
    session_nice = machine.autogroup_nice(os.getpid())
    load_before = machine.load_average()
    if os.getloadavg()[0] > BUSY_LOAD:
        print(f"bench: warning: load average {load_before} before starting: other work is "
              "running, results will be noisy", flush=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
    try:
        (work / "tmp").mkdir()
        env = clean_env(work / "tmp")
        tls = self_signed(work / "tls")
        if args.boost:
            machine.boost(os.getpid(), BOOSTED_NICE)
        with RegistryServer(work / "registry", tls=tls) as registry:  # stopped by its PID
            assert registry.pid is not None
            if args.boost:
                machine.boost(registry.pid, BOOSTED_NICE)  # a session (autogroup) of its own
            for image in images:
                push(image, registry.url, tls.certificate)
            print(f"bench: registry {registry.url} (pid {registry.pid}), images pushed",
                  flush=True)
            trees = {image.key: extract_tree(image, work / "trees" / image.key)
                     for image in images}
            setup = Setup(registry.netloc, tls.certificate, env, registry.pid, trees, ours)
            if args.gzip_level is not None:
                setup = at_gzip_level(setup, args.gzip_level, work / "gzip-level")
            results, entries = run_rounds(setup, images, args.runs, work)
    finally:
        machine.restore_autogroup(os.getpid(), session_nice)
        if args.keep_work:
            print(f"bench: work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    header: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(),
        "load_before": load_before,
        "load_after": machine.load_average(),
        "command": " ".join(["scripts/bench.sh convert", *args.argv]),
        "runs": args.runs,
        "gzip_level": args.gzip_level or DEFAULT_GZIP_LEVEL,
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "versions": machine.versions(env),
    }
    print_report(images, results, entries, header, args.json)
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.convert", description=(__doc__ or "").splitlines()[0]
    )
    runs = parser.add_mutually_exclusive_group()
    runs.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="rounds (default 3)")
    runs.add_argument("--quick", action="store_const", dest="runs", const=1, help="one round")
    parser.add_argument(
        "--images",
        type=lambda text: text.split(","),
        default=list(IMAGES),
        help=f"comma-separated, from {','.join(IMAGES)} (default: all)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"debootstrap tree, layer blobs, and each run's scratch space (default "
        f"{DEFAULT_CACHE})",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"first wait up to this long for the 1-minute load average to fall below "
        f"{BUSY_LOAD} (a shared machine)",
    )
    parser.add_argument(
        "--no-boost",
        dest="boost",
        action="store_false",
        help=f"run at the normal priority (default: nice {BOOSTED_NICE}, so that other work "
        "on the machine disturbs the measurements less)",
    )
    parser.add_argument(
        "--gzip-level",
        type=int,
        choices=range(1, 10),
        metavar="N",
        help="every contender compresses at gzip level N, 1-9 (default: mksquashfs's own, "
        f"{DEFAULT_GZIP_LEVEL}); see bench/README.md for how each is told",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the run's scratch space")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args(argv)
    unknown = [key for key in args.images if key not in IMAGES]
    if unknown or not args.images:
        parser.error(f"--images takes {','.join(IMAGES)}, not {','.join(unknown) or 'nothing'}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        print("bench: run as root (debootstrap, and images owned by root)", file=sys.stderr)
        return 2
    return run_reporting_errors(lambda: benchmark(args))


if __name__ == "__main__":
    raise SystemExit(main())
