"""A private Slurm cluster on this one machine, for the tests, the demo and the benchmarks:
a munged, a slurmctld and several slurmd (Debian's slurmd supports several nodes per
host), each slurmd in its own UTS and mount namespace (its own hostname and mount table:
what setupRoot's per-node mounts need) with its own port and loopback address.

Every file lives in one directory; the daemons run in the foreground, each the process we
started (unshare and sh exec into slurmd), and are stopped by PID. Node names are mapped in
/etc/hosts by lines this class adds and removes again (nothing else of the file changes).
Clients (sbatch, srun, scontrol) find the cluster through `env()` (SLURM_CONF).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from shifter import proc
from shifter.devtools.munged import MungeServer
from shifter.devtools.service import ServiceProcess, free_port
from shifter.errors import ShifterError

HOSTS = "/etc/hosts"
START_TIMEOUT_S = 60.0
CPUS_PER_NODE = 2
CGROUP_ROOT = "/sys/fs/cgroup"
# proctrack/cgroup and task/cgroup on cgroup v1 (what this machine mounts); no constraint:
# the jobs' processes are tracked (freezer) and killed by Slurm, nothing is limited.
CGROUP_CONF = ("CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\n"
               "ConstrainRAMSpace=no\n")
CGROUP_LINES = ("ProctrackType=proctrack/cgroup", "TaskPlugin=task/cgroup")
LINUXPROC_LINES = ("ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none")


class ClusterError(ShifterError):
    """The private cluster did not come up."""


class _Daemon(ServiceProcess):
    def __init__(self, argv: list[str], output: Path, env: dict[str, str]) -> None:
        super().__init__()
        self.argv, self.output, self.env = argv, output, env

    def start(self) -> _Daemon:
        self._process = proc.spawn(self.argv, output_path=self.output, env=self.env)
        return self

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def run_names() -> tuple[str, str]:
    """A node name prefix and a loopback address base of this process's own: two clusters
    on one machine (two engineers' tests) must not share node names (the /etc/hosts lines
    one removes at its end, the per-node records in /run/shifter-slurm) or addresses."""
    pid = os.getpid()
    return f"sh{pid}n", f"127.{100 + (pid >> 8) % 150}.{pid % 256}."


class SlurmCluster:
    """`nodes` slurmd named `{prefix}1`.. on `{address_base}1`..; both default to names of
    this process's own (`run_names`). `cgroups`: proctrack/cgroup and task/cgroup (the
    extern step gets cgroups of its own; needs the cgroup v1 freezer hierarchy), else
    proctrack/linuxproc."""

    def __init__(
        self,
        directory: Path,
        *,
        nodes: int = 3,
        prefix: str | None = None,
        address_base: str | None = None,
        plugstack: Sequence[str] = (),
        slurm_lines: Sequence[str] = (),
        munge_socket: Path | None = None,
        cgroups: bool = False,
    ) -> None:
        self.directory = Path(directory)
        own_prefix, own_base = run_names()
        prefix, address_base = prefix or own_prefix, address_base or own_base
        self.nodes = [f"{prefix}{i}" for i in range(1, nodes + 1)]
        self.addresses = {node: f"{address_base}{i}" for i, node in enumerate(self.nodes, 1)}
        self.plugstack = list(plugstack)
        self.slurm_lines = list(slurm_lines)
        self.cgroups = cgroups
        self.conf = self.directory / "slurm.conf"
        # A munged of the caller's (shared with a gateway), else one of our own.
        self.munged = MungeServer(self.directory / "munge") if munge_socket is None else None
        self.munge_socket = munge_socket or self.directory / "munge" / "run" / "munge.socket"
        self.daemons: list[_Daemon] = []
        self.hosts_lines: list[str] = []

    def env(self) -> dict[str, str]:
        """What a client needs to find the cluster."""
        return {"SLURM_CONF": str(self.conf), "PATH": "/usr/bin:/usr/sbin:/bin:/sbin"}

    def _write_config(self) -> None:
        d = self.directory
        for sub in ("state", "spool", "log", *(f"spool/{node}" for node in self.nodes)):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "plugstack.conf").write_text("".join(f"{line}\n" for line in self.plugstack))
        host = socket.gethostname()
        lines = [
            "ClusterName=shiftertest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={free_port()}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            *(CGROUP_LINES if self.cgroups else LINUXPROC_LINES),
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "MpiDefault=none",
            # Batch jobs are scheduled on the next pass (~1 s), not after a 3 s delay.
            "SchedulerParameters=batch_sched_delay=0",
            "ReturnToService=2",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=60",
            "MessageTimeout=30",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=30",
            f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}/%n",
            f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'spool'}/slurmd-%n.pid",
            f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log'}/slurmd-%n.log",
            "SlurmdDebug=info",
            f"PlugStackConfig={d / 'plugstack.conf'}",
            *self.slurm_lines,
        ]
        for node in self.nodes:
            lines.append(
                f"NodeName={node} NodeHostname={node} NodeAddr={self.addresses[node]} "
                f"Port={free_port()} CPUs={CPUS_PER_NODE} RealMemory=1000 State=UNKNOWN"
            )
        lines.append(
            f"PartitionName=debug Nodes={','.join(self.nodes)} Default=YES "
            "MaxTime=INFINITE State=UP OverSubscribe=NO"
        )
        self.conf.write_text("".join(f"{line}\n" for line in lines))
        # Slurm reads cgroup.conf next to slurm.conf.
        (d / "cgroup.conf").write_text(CGROUP_CONF if self.cgroups else "")
        for path in (d, d / "log", self.conf, d / "plugstack.conf", d / "cgroup.conf"):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def _add_hosts(self) -> None:
        text = Path(HOSTS).read_text()
        self.hosts_lines = [f"{self.addresses[n]} {n}  # shifter test cluster" for n in self.nodes]
        missing = [line for line in self.hosts_lines if line not in text.splitlines()]
        with open(HOSTS, "a") as file:
            if text and not text.endswith("\n"):
                file.write("\n")
            file.writelines(f"{line}\n" for line in missing)

    def _remove_hosts(self) -> None:
        if not self.hosts_lines:
            return
        lines = Path(HOSTS).read_text().splitlines(keepends=True)
        kept = [line for line in lines if line.rstrip("\n") not in self.hosts_lines]
        # /etc/hosts may be a bind mount (containers): rewrite in place, never replace.
        with open(HOSTS, "r+") as file:
            file.write("".join(kept))
            file.truncate()
        self.hosts_lines = []

    def start(self) -> SlurmCluster:
        if self.cgroups and not os.path.isfile(f"{CGROUP_ROOT}/freezer/cgroup.procs"):
            raise ClusterError(
                f"proctrack/cgroup needs the cgroup v1 freezer hierarchy at {CGROUP_ROOT}/freezer",
                hint=f"mount -t cgroup -o freezer cgroup {CGROUP_ROOT}/freezer",
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            if self.munged is not None:
                self.munged.start()
            self._write_config()
            self._add_hosts()
            env = self.env()
            ctld = _Daemon(
                ["slurmctld", "-D", "-c", "-i", "-f", str(self.conf)],
                self.directory / "log" / "slurmctld.out",
                env,
            )
            self.daemons.append(ctld.start())
            for node in self.nodes:
                # unshare and sh exec: the PID we hold is slurmd's.
                script = f"hostname {node} && exec slurmd -D -N {node} -f {self.conf}"
                argv = ["unshare", "--uts", "--mount", "--propagation", "private",
                        "sh", "-c", script]  # fmt: skip
                daemon = _Daemon(argv, self.directory / "log" / f"slurmd-{node}.out", env)
                self.daemons.append(daemon.start())
            self.wait_until_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def scontrol(self, *args: str) -> str:
        return proc.run(["scontrol", *args], env=self.env(), timeout=60).stdout.decode()

    def node_states(self) -> dict[str, str]:
        out = proc.run(["sinfo", "-h", "-N", "-o", "%N %T"], env=self.env(), timeout=60)
        states = {}
        for line in out.stdout.decode().splitlines():
            name, _, state = line.partition(" ")
            states[name] = state.strip()
        return states

    def wait_until_idle(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            dead = [d for d in self.daemons if not d.alive()]
            if dead:
                raise ClusterError(f"a Slurm daemon exited: {dead[0].argv}\n{self.log_tail()}")
            try:
                states = self.node_states()
            except ShifterError:
                states = {}
            if states and all(states.get(n) == "idle" for n in self.nodes):
                return
            time.sleep(0.2)
        raise ClusterError(f"the nodes are not idle: {states}\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        parts = []
        for path in sorted((self.directory / "log").glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"== {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        for daemon in reversed(self.daemons):
            daemon.stop()
        self.daemons = []
        if self.munged is not None:
            self.munged.stop()
        self._remove_hosts()
        if self.cgroups:
            self._remove_cgroups()

    def _remove_cgroups(self) -> None:
        """The nodes' `slurm_<node>` cgroups slurmd leaves (empty once its jobs ended)."""
        for hierarchy in Path(CGROUP_ROOT).iterdir():
            for node in self.nodes:
                remove_cgroup_tree(hierarchy / f"slurm_{node}")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def remove_cgroup_tree(top: Path) -> None:
    """Remove a cgroup v1 directory and those below it that hold no process (a cgroup's
    directory goes only once none is below it: deepest first)."""
    if not top.is_dir():
        return
    below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                   reverse=True)  # fmt: skip
    for directory in (*below, top):
        with contextlib.suppress(OSError):
            directory.rmdir()


def slurmd_pids(cluster: SlurmCluster) -> list[int]:
    return [d.pid for d in cluster.daemons[1:] if d.pid is not None]


def in_node(cluster: SlurmCluster, node: str, argv: list[str]) -> list[str]:
    """`argv` run in `node`'s namespaces (nsenter into its slurmd), as a command line."""
    pid = slurmd_pids(cluster)[cluster.nodes.index(node)]
    return ["nsenter", "-t", str(pid), "-u", "-m", "--", *argv]


def ensure_dir(path: str, mode: int = 0o755) -> None:
    os.makedirs(path, mode=mode, exist_ok=True)
