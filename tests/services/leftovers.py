"""Checks that a stopped service left no process behind (for lifecycle tests), and a way
to run a command whose processes all end with its timeout."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


def run_as_group(
    argv: Sequence[str], *, timeout: float, input: str | None = None, **options: Any
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run(argv, capture_output=True, text=True)` in a process group of its
    own, all of which is killed when `timeout` passes: runuser does not pass SIGKILL on, so
    a launch that hangs would otherwise outlive its test (and, holding a copy of a
    container's mounts, fail a later unsetupRoot)."""
    with subprocess.Popen(argv, stdin=subprocess.PIPE if input is not None else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True, **options) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise subprocess.TimeoutExpired(argv, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
