"""The gateway benchmark's load: munge credentials minted ahead, wrk fed one per request,
a one-client latency probe, and the CPU time each process tree used meanwhile.

wrk runs `WRK_SCRIPT`: each wrk thread reads its own file of credentials (one per line) and
sends each once; `done()` prints one JSON line with the request count, the errors (connect,
read, write, timeout, and replies other than 2xx/3xx) and the latency percentiles, and how
many credentials were used. A thread that runs out sends the word `exhausted` instead,
which the gateway refuses (401): the run then has errors and says why.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shifter.errors import ShifterError
from shifter.munge.libmunge import Munge
from shifter.proc import run

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RESULT_MARK = "WRKJSON "

WRK_SCRIPT = """\
-- One munge credential per request: wrk thread N reads the file DIR/N (one per line).
-- Arguments: METHOD PATH DIR [close] ("close": a new connection for every request).
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  method, path = args[1], args[2]
  creds = {}
  for line in io.lines(args[3] .. "/" .. id) do creds[#creds + 1] = line end
  used, exhausted = 0, 0
  headers = {}
  if args[4] == "close" then headers["Connection"] = "close" end
end

function request()
  used = used + 1
  local cred = creds[used]
  if cred == nil then
    exhausted = exhausted + 1
    cred = "exhausted"
  end
  headers["authentication"] = cred
  return wrk.format(method, path, headers)
end

function done(summary, latency, requests)
  local used_all, exhausted_all = 0, 0
  for _, thread in ipairs(threads) do
    used_all = used_all + thread:get("used")
    exhausted_all = exhausted_all + thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    '%s{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "used": %d, "exhausted": %d}\\n',
    "RESULT_MARK", summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, used_all, exhausted_all))
end
""".replace("RESULT_MARK", RESULT_MARK)


@dataclass(frozen=True)
class LoadResult:
    """One wrk run."""

    requests: int
    seconds: float
    errors: int
    error_detail: Mapping[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    credentials_used: int
    exhausted: int
    wrk_cpu_s: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Latencies:
    """One client, one request at a time, each with a fresh credential (keep-alive)."""

    count: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    statuses: Mapping[int, int]


def mint(munge: Munge, count: int, directory: Path, files: int) -> None:
    """`count` fresh credentials spread over `files` files named 1..files."""
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-count // files)
    for number in range(1, files + 1):
        lines = [munge.encode() for _ in range(per_file)]
        (directory / str(number)).write_text("\n".join(lines) + "\n")


def run_wrk(
    url: str,
    method: str,
    path: str,
    credentials: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    script: Path,
    close: bool = False,
) -> LoadResult:
    """wrk against `url` for `seconds`, one credential from `credentials` per request;
    `close`: each request on a new connection, as shifterimg and the runtime send them."""
    script.write_text(WRK_SCRIPT)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
         "-s", script, url, "--", method, path, credentials, "close" if close else "keep"],
        timeout=seconds + 120,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = result.stdout.decode(errors="replace")
    line = next((x for x in output.splitlines() if x.startswith(RESULT_MARK)), None)
    if line is None:
        raise ShifterError("wrk printed no result line", hint=output[-2000:])
    data = json.loads(line.removeprefix(RESULT_MARK))
    detail = {key: int(data[key]) for key in ("connect", "read", "write", "status", "timeout")}
    return LoadResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors=sum(detail.values()),
        error_detail=detail,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        credentials_used=int(data["used"]),
        exhausted=int(data["exhausted"]),
        wrk_cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


def probe(
    host: str, port: int, method: str, path: str, credentials: Sequence[str]
) -> Latencies:
    """One request per credential, in order, on one keep-alive connection."""
    times: list[float] = []
    statuses: dict[int, int] = {}
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        for credential in credentials:
            body = b"" if method == "POST" else None
            started = time.perf_counter()
            connection.request(method, path, body=body, headers={"authentication": credential})
            reply = connection.getresponse()
            reply.read()
            times.append(time.perf_counter() - started)
            statuses[reply.status] = statuses.get(reply.status, 0) + 1
            if reply.will_close:
                connection.close()
    finally:
        connection.close()
    ordered = sorted(times)
    return Latencies(
        count=len(times),
        errors=sum(n for status, n in statuses.items() if status != 200),
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        max_ms=ordered[-1] * 1000,
        statuses=statuses,
    )


# -- CPU time per process tree ----------------------------------------------------------------


def _stat_fields(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields resume after the last ')'.
    return text[text.rindex(b")") + 2 :].split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def tree_cpu_s(root: int, children: Mapping[int, list[int]]) -> float:
    """CPU seconds of `root` and its descendants, including children that have exited and
    been waited for (cutime/cstime): a PostgreSQL backend that quit still counts."""
    total = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the name.
        total += sum(int(value) for value in fields[11:15])
        stack.extend(children.get(pid, ()))
    return total / CLOCK_TICKS


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent not idle since boot (steal included, iowait not)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


class CpuMeter:
    """CPU seconds each named process tree, and the whole machine, used between `start`
    and `stop`."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self.roots = dict(roots)
        self._before: dict[str, float] = {}
        self._busy = 0.0

    def _sample(self) -> dict[str, float]:
        children = _children()
        return {name: tree_cpu_s(pid, children) for name, pid in self.roots.items()}

    def start(self) -> None:
        self._before = self._sample()
        self._busy = machine_busy_s()

    def stop(self) -> tuple[dict[str, float], float]:
        """Per tree, and for the machine as a whole."""
        after = self._sample()
        used = {name: after[name] - self._before.get(name, 0.0) for name in after}
        return used, machine_busy_s() - self._busy
