"""What the results depend on: the machine, its load, and the versions of every tool."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path

from shifter.errors import ShifterError
from shifter.proc import find_tool, run

REPO = Path(__file__).resolve().parents[1]
# Tools the bench runs, with the Debian package that ships each.
REQUIRED_TOOLS = {
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "tar2sqfs": "squashfs-tools-ng",
    "ch-image": "charliecloud",
    "ch-convert": "charliecloud",
    "debootstrap": "debootstrap",
    "docker-registry": "docker-registry",
    "openssl": "openssl",
    "tar": "tar",
    "/usr/bin/time": "time",
}


def check_tools(env: Mapping[str, str]) -> None:
    missing = []
    for tool, package in REQUIRED_TOOLS.items():
        try:
            find_tool(tool) if tool.startswith("/") else _which(tool, env)
        except ShifterError:
            missing.append(f"{tool} ({package})")
    if missing:
        raise ShifterError(
            "missing benchmark tools: " + ", ".join(missing),
            hint="run `sudo bash scripts/install.sh --bench` (scripts/bench.sh does)",
        )


def _which(tool: str, env: Mapping[str, str]) -> None:
    for directory in env["PATH"].split(os.pathsep):
        if os.access(os.path.join(directory, tool), os.X_OK):
            return
    raise ShifterError(f"{tool} not found")


def _first_line(argv: list[str], env: Mapping[str, str]) -> str:
    result = run(argv, env=env, check=False)
    text = (result.stdout or b"") + (result.stderr or b"")
    lines = text.decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "?"


def _package_version(package: str) -> str:
    result = run(["dpkg-query", "-W", "-f=${Version}", package], check=False)
    return (result.stdout or b"").decode().strip() or "?"


def _git_revision() -> str:
    try:
        result = run(["git", "-C", REPO, "describe", "--always", "--dirty"], check=False)
    except ShifterError:
        return "?"
    return (result.stdout or b"").decode().strip() or "?"


def versions(env: Mapping[str, str]) -> dict[str, str]:
    return {
        "mksquashfs": _first_line(["mksquashfs", "-version"], env).removeprefix("mksquashfs "),
        "tar2sqfs": _first_line(["tar2sqfs", "--version"], env).removeprefix("tar2sqfs "),
        "charliecloud": f"{_first_line(['ch-image', '--version'], env)} "
        f"(Debian {_package_version('charliecloud')})",
        "docker-registry": f"Debian {_package_version('docker-registry')}",
        "debootstrap": f"Debian {_package_version('debootstrap')}",
        "python": platform.python_version(),
        "shifter": f"git {_git_revision()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 2**20
    return 0.0


def describe() -> str:
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), {_memory_gib():.0f} GiB RAM, "
        f"Linux {platform.release()}, {_os_release()}"
    )


def _os_release() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "?"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def wait_for_idle(limit_s: float, load: float, poll_s: float = 15.0) -> None:
    """Wait until the 1-minute load average is below `load`, at most `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= load and time.monotonic() < deadline:
        print(f"bench: load average {load_average()}, waiting for it to fall below {load}",
              flush=True)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def autogroup_nice(pid: int) -> int | None:
    """The niceness of `pid`'s autogroup (`/autogroup-N nice K`), None without autogroups."""
    try:
        with open(f"/proc/{pid}/autogroup") as autogroup:
            return int(autogroup.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def boost(pid: int, nice: int) -> None:
    """Give `pid` (and what it starts later) the CPU ahead of other work: its own niceness,
    and its autogroup's. With autogroup scheduling (Debian's default) every session is a
    group scheduled fairly against the others, so a process's own niceness only counts
    within its session; the autogroup's niceness ranks the session itself. The autogroup
    is the whole session's: `restore_autogroup` puts it back."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    if autogroup_nice(pid) is not None:
        restore_autogroup(pid, nice)


def restore_autogroup(pid: int, nice: int | None) -> None:
    if nice is None:
        return
    try:
        with open(f"/proc/{pid}/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:
        pass  # the process is gone, or this kernel refuses: nothing left to undo
