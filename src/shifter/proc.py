"""The one place shifter runs external programs.

Every call logs its argv at debug level, captures stderr, and raises `ToolError` with the
tool's last stderr lines when it fails; a missing program raises `ToolNotFoundError` naming
the tool and, when given, the configuration key that sets its path.
"""

from __future__ import annotations

import os
import sys

from shifter.errors import ToolError, ToolNotFoundError

# The heavy modules (logging ~7 ms, subprocess ~2.5 ms, shutil, threading) are imported
# where they are used: a launch that starts only a module's userhook (start.py) should not
# pay for them all.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import collections
    import subprocess
    import threading
    from collections.abc import Callable, Mapping, Sequence
    from typing import IO, BinaryIO, TypeVar

    T = TypeVar("T")

SIGTERM = 15
CLOSE_LIMIT = 1 << 16  # descriptors a child started by run_light keeps: 0, 1 and 2 only
EXIT_NOT_STARTED = 127

STDERR_TAIL_LINES = 10
FEED_BUFFER = 1 << 20  # tar headers are 512-byte writes; batch them into big pipe writes
DRAIN_GRACE = 2.0  # seconds to collect a killed tool's last output


def __getattr__(name: str) -> object:
    # `Process`: the handle of a started program, for modules that keep one (they never
    # import subprocess themselves); resolved on first use.
    if name == "Process":
        import subprocess

        return subprocess.Popen
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_light(argv: Sequence[str], *, env: Mapping[str, str], cwd: str) -> None:
    """`run` with stdout passed through, for the launch path (a module's userhook): fork
    and exec, stderr collected through a pipe, `ToolError` with its last lines on failure.
    Without subprocess, whose import costs a launch ~5 ms, and importable after a chroot
    (only `os` and `_signal`). As subprocess does: descriptors above 2 are closed and
    SIGPIPE and SIGXFSZ, which Python ignores, are restored in the child."""
    import _signal

    args = [str(a) for a in argv]
    args[0] = find_tool(args[0])
    _debug("run: %s", " ".join(args))
    environment = dict(env)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls until exec
        try:
            os.dup2(write_fd, 2)
            os.closerange(3, CLOSE_LIMIT)
            for number in (_signal.SIGPIPE, _signal.SIGXFSZ):
                _signal.signal(number, _signal.SIG_DFL)
            os.chdir(cwd)
            os.execve(args[0], args, environment)
        except OSError as error:
            os.write(2, f"{args[0]}: {error.strerror}\n".encode())
        finally:
            os._exit(EXIT_NOT_STARTED)
    os.close(write_fd)
    chunks = []
    try:
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        _, status = os.waitpid(pid, 0)
    returncode = os.waitstatus_to_exitcode(status)
    if returncode != 0:
        raise ToolError(
            f"{os.path.basename(args[0])} failed with exit status {returncode}",
            argv=args,
            returncode=returncode,
            stderr_tail=_tail(b"".join(chunks).decode(errors="replace")),
        )


def _debug(message: str, *args: object) -> None:
    """Log at debug level, if this process uses logging at all: one that never imported it
    has no handler that would show the line."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(__name__).debug(message, *args)


def find_tool(name: str, *, config_key: str | None = None) -> str:
    """Absolute path of `name` (a bare name searched on PATH, or a path checked as is)."""
    if os.sep in name:
        if os.access(name, os.X_OK) and os.path.isfile(name):
            return name
        found = None
    else:
        import shutil

        found = shutil.which(name)
    if found is None:
        hint = f"install it or set {config_key}" if config_key else "install it"
        raise ToolNotFoundError(f"required tool not found: {name}", hint=hint)
    return found


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def run(
    argv: Sequence[str],
    *,
    config_key: str | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    capture_stdout: bool = True,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run a program to completion; raise `ToolError` on a non-zero exit when `check`."""
    import subprocess

    args = [str(a) for a in argv]
    args[0] = find_tool(args[0], config_key=config_key)
    _debug("run: %s", " ".join(args))
    try:
        result = subprocess.run(
            args,
            input=input,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            stdout=subprocess.PIPE if capture_stdout else None,
            stderr=subprocess.PIPE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(
            f"{os.path.basename(args[0])} did not finish within {timeout} s",
            argv=args,
            stderr_tail=_tail((exc.stderr or b"").decode(errors="replace")),
        ) from exc
    if check and result.returncode != 0:
        stderr = (result.stderr or b"").decode(errors="replace")
        raise ToolError(
            f"{os.path.basename(args[0])} failed with exit status {result.returncode}",
            argv=args,
            returncode=result.returncode,
            stderr_tail=_tail(stderr),
        )
    return result


def run_feeding(
    argv: Sequence[str],
    feed: Callable[[BinaryIO], None],
    *,
    config_key: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Run a program while `feed` writes its stdin; return the tail of its output.

    stdout and stderr are drained by a thread into the last `STDERR_TAIL_LINES` lines, so
    a chatty tool can never block on a full pipe. If `feed` raises, the program is killed
    and the exception propagates; if the program stops reading (it failed), its exit status
    and last lines are raised as `ToolError`. `timeout` bounds the wait once the input is
    all written. `env`, as for `run`, replaces the environment.
    """
    import collections
    import subprocess
    import threading

    args = [str(a) for a in argv]
    args[0] = find_tool(args[0], config_key=config_key)
    tool = os.path.basename(args[0])
    _debug("run (feeding stdin): %s", " ".join(args))
    process = subprocess.Popen(
        args,
        bufsize=FEED_BUFFER,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
    )
    assert process.stdin is not None and process.stdout is not None
    lines: collections.deque[bytes] = collections.deque(maxlen=STDERR_TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True)
    drain.start()
    broken_pipe = False
    try:
        try:
            feed(process.stdin)  # type: ignore[arg-type]
            process.stdin.close()
        except BrokenPipeError:
            broken_pipe = True
        returncode = process.wait(timeout=timeout)
    except BaseException as exc:
        process.kill()
        process.wait()
        _finish(drain, process.stdin)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ToolError(
                f"{tool} did not finish within {timeout} s",
                argv=args,
                stderr_tail=b"".join(lines).decode(errors="replace").strip(),
            ) from exc
        raise
    _finish(drain, process.stdin)
    tail = b"".join(lines).decode(errors="replace").strip()
    if returncode != 0 or broken_pipe:
        raise ToolError(
            f"{tool} failed with exit status {returncode}"
            if returncode
            else f"{tool} stopped reading its input",
            argv=args,
            returncode=returncode,
            stderr_tail=tail,
        )
    return tail


def run_reading(
    argv: Sequence[str],
    read: Callable[[BinaryIO], T],
    *,
    timeout: float | None = None,
) -> T:
    """Run a program while `read` consumes its stdout; return what `read` returns.

    stderr is drained by a thread into its last lines. If `read` raises (or returns before
    the end: the rest is not wanted), the program is killed; otherwise a non-zero exit
    raises `ToolError` with those lines. `timeout` bounds the wait after `read` returns.
    """
    import collections
    import subprocess
    import threading

    args = [str(a) for a in argv]
    args[0] = find_tool(args[0])
    tool = os.path.basename(args[0])
    _debug("run (reading stdout): %s", " ".join(args))
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    lines: collections.deque[bytes] = collections.deque(maxlen=STDERR_TAIL_LINES)
    drain = threading.Thread(target=_drain, args=(process.stderr, lines), daemon=True)
    drain.start()
    try:
        result = read(process.stdout)  # type: ignore[arg-type]
        finished = process.stdout.read(1) == b""
        if not finished:
            process.kill()
        returncode = process.wait(timeout=timeout)
    except BaseException:
        process.kill()
        process.wait()
        drain.join(timeout=DRAIN_GRACE)
        raise
    finally:
        process.stdout.close()
    drain.join(timeout=DRAIN_GRACE)
    if finished and returncode != 0:
        raise ToolError(f"{tool} failed with exit status {returncode}", argv=args,
                        returncode=returncode,
                        stderr_tail=b"".join(lines).decode(errors="replace").strip())
    return result


def _drain(stream: IO[bytes], lines: collections.deque[bytes]) -> None:
    for line in stream:
        lines.append(line)
        _debug("%s", line.decode(errors="replace").rstrip())
    stream.close()


def _finish(drain: threading.Thread, stdin: IO[bytes]) -> None:
    # A grandchild may still hold the output pipe open: do not wait on it for long.
    drain.join(timeout=DRAIN_GRACE)
    import contextlib

    with contextlib.suppress(BrokenPipeError):  # flushing what a dead tool never read
        stdin.close()


def spawn(
    argv: Sequence[str],
    *,
    output_path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running program (a service) in its own session, output to a file."""
    import subprocess

    args = [str(a) for a in argv]
    args[0] = find_tool(args[0])
    _debug("spawn: %s", " ".join(args))
    with open(output_path, "wb") as output:
        return subprocess.Popen(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(
    process: subprocess.Popen[bytes], *, timeout: float = 10.0, signum: int = SIGTERM
) -> None:
    """Stop a program started by `spawn`: `signum` by its PID, SIGKILL if it lingers."""
    import subprocess

    if process.poll() is not None:
        return
    process.send_signal(signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
