"""One measured command: wall time, CPU time, peak RSS of its largest process, and the peak
of the summed RSS of its whole process tree.

The command runs under GNU time (`/usr/bin/time -f '%e %M %U %S'`): `%M` is the largest
maximum RSS among the processes it waited for (one process, not a sum), `%U %S` the CPU
seconds of the whole tree. A pipeline's footprint is the sum of its concurrent processes
(Python and tar2sqfs, ch-convert's shell and mksquashfs), so a thread also samples the tree
every `SAMPLE_INTERVAL_S` and keeps the largest sum of RSS seen (shared pages counted once
per process: an upper bound; short peaks between samples can be missed). Wall time is our
own monotonic clock around the call, finer than GNU time's 10 ms. `others_cpu_s` is the
CPU time the rest of the machine used meanwhile (all busy time in /proc/stat, hypervisor
steal included, minus the command's own, the registry's and this process's); it includes
cycles the command left idle. `cpu_wait_s` is the time the command's threads spent runnable
but waiting for a CPU (/proc/PID/task/TID/schedstat, sampled): other work shows there,
and so does a tool running more busy threads than there are cores.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shifter.errors import ShifterError
from shifter.proc import run

GNU_TIME = "/usr/bin/time"
TIME_FORMAT = "%e %M %U %S"
SAMPLE_INTERVAL_S = 0.05
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    wall_s: float
    cpu_s: float  # user + system, whole tree
    max_rss_kib: int  # the largest single process (GNU time %M)
    tree_rss_kib: int  # the largest sampled sum over the tree (0 if never sampled)
    others_cpu_s: float  # CPU time used by everything else on the machine meanwhile
    cpu_wait_s: float  # the tree's threads' time runnable but waiting for a CPU (sampled)


def machine_busy_s() -> float:
    """CPU seconds spent not idle since boot, all CPUs (user, nice, system, irq, softirq,
    steal: everything but idle and iowait)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def _parent_of(pid: str) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ')'.
    return int(text[text.rindex(b")") + 2 :].split(b" ", 2)[1])


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_KIB
    except (OSError, IndexError, ValueError):
        return 0


def tree_pids(root: int, *, skip: Collection[int]) -> list[int]:
    """The descendants of `root`'s children, except the children in `skip` (and their
    subtrees): `root`'s children are the GNU time wrappers and, in `skip`, services such as
    the registry."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _parent_of(entry)
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    stack = [pid for child in children.get(root, []) if child not in skip
             for pid in children.get(child, [])]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def _run_delays_ns(pid: int) -> dict[tuple[int, int], int]:
    """Per thread of `pid`: nanoseconds spent runnable but waiting for a CPU so far."""
    delays = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as schedstat:
                delays[(pid, int(tid))] = int(schedstat.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return delays


class TreeSampler:
    """Samples the command's process tree in a thread until stopped: keeps the peak of its
    summed RSS, and each thread's last-seen run-queue wait (a thread's last 50 ms are
    missed, and a process that lives less than 50 ms may be missed entirely)."""

    def __init__(self, *, skip: Collection[int]) -> None:
        self.skip = frozenset(skip)
        self.peak_kib = 0
        self._delays: dict[tuple[int, int], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)

    @property
    def cpu_wait_s(self) -> float:
        return sum(self._delays.values()) / 1e9

    def _loop(self) -> None:
        root = os.getpid()
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            rss = 0
            for pid in tree_pids(root, skip=self.skip):
                rss += _rss_kib(pid)
                self._delays.update(_run_delays_ns(pid))
            self.peak_kib = max(self.peak_kib, rss)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

def process_cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _bystanders_cpu_s(pids: Collection[int]) -> float:
    return sum(process_cpu_s(pid) for pid in (os.getpid(), *pids))


def parse_time_output(text: str) -> tuple[float, int, float]:
    """(elapsed s, max RSS KiB, user + sys s) from the last line GNU time wrote."""
    lines = text.strip().splitlines()
    try:
        elapsed, rss, user, system = lines[-1].split()
        return float(elapsed), int(rss), float(user) + float(system)
    except (IndexError, ValueError) as exc:
        raise ShifterError(f"cannot read GNU time's output {text!r}") from exc


def measure(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str],
    skip_pids: Collection[int] = (),
    cwd: str | None = None,
) -> tuple[Sample, bytes]:
    """Run `argv` once (after a `sync`, so earlier runs' dirty pages are not written back
    during this one); return the measurement and the command's stdout."""
    run(["sync"])
    with tempfile.NamedTemporaryFile(prefix="bench-time-", mode="r") as report:
        with TreeSampler(skip=skip_pids) as sampler:
            busy_before, started = machine_busy_s(), time.monotonic()
            ours_before = _bystanders_cpu_s(skip_pids)
            result = run(
                [GNU_TIME, "-f", TIME_FORMAT, "-o", report.name, *argv], env=env, cwd=cwd
            )
            wall, busy = time.monotonic() - started, machine_busy_s() - busy_before
            bystanders = _bystanders_cpu_s(skip_pids) - ours_before
        _, max_rss, cpu = parse_time_output(report.read())
    others = max(0.0, busy - cpu - bystanders)
    sample = Sample(wall, cpu, max_rss, sampler.peak_kib, others, sampler.cpu_wait_s)
    return sample, result.stdout or b""
