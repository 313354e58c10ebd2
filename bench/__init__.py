"""Benchmarks run by hand (`scripts/bench.sh`), never by the test suite."""

from __future__ import annotations

import sys
from collections.abc import Callable

from shifter.errors import ShifterError, ToolError


def run_reporting_errors(benchmark: Callable[[], int]) -> int:
    """Run a benchmark; a ShifterError ends it with its message (and the command that
    failed, for a tool) on stderr and exit status 1."""
    try:
        return benchmark()
    except ShifterError as exc:
        if isinstance(exc, ToolError) and exc.argv:
            print(f"bench: command: {' '.join(exc.argv)}", file=sys.stderr)
        print(f"bench: {exc.describe()}", file=sys.stderr)
        return 1
