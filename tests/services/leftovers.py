"""Checks that a stopped service left no process behind (for lifecycle tests)."""

from __future__ import annotations

from pathlib import Path


def process_running(pid: int) -> bool:
    """True while /proc has the PID and it is not a zombie (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (a service's private directory, say)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # exited while we looked
    return found
