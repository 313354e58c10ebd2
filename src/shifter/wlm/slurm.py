"""Slurm's side of `interface.BatchSystem`: the allocation, from `scontrol`.

`scontrol show job -o ID` prints one line of `Key=Value` fields; `scontrol show hostnames
LIST` expands a node list. Both read the cluster from $SLURM_CONF (the prolog's
environment carries slurmd's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from shifter.errors import ShifterError
from shifter.proc import run
from shifter.wlm.interface import Allocation

SCONTROL_TIMEOUT_S = 30
FIELD = re.compile(r"(?:^|\s)([A-Za-z]+)=(\S*)")
# OverSubscribe as scontrol prints a job's `shared` field: only NO (--exclusive) gives the
# job whole nodes; OK, YES, USER, MCS and TOPO let other jobs (of the user) in.
EXCLUSIVE = "NO"


class SlurmError(ShifterError):
    """scontrol did not give what the hooks need."""


def job_fields(text: str) -> dict[str, str]:
    """The `Key=Value` fields of one `scontrol show job -o` line (values without spaces)."""
    return {key: value for key, value in FIELD.findall(text)}


def allocation_from(job_id: str, fields: Mapping[str, str], nodes: tuple[str, ...]) -> Allocation:
    user = re.fullmatch(r"[^()]*\((\d+)\)", fields.get("UserId", ""))
    if user is None or not fields.get("NumCPUs", "").isdigit():
        raise SlurmError(f"scontrol show job {job_id}: no UserId or NumCPUs in its answer")
    return Allocation(
        job_id=job_id,
        uid=int(user.group(1)),
        nodes=nodes,
        cpus=int(fields["NumCPUs"]),
        shared=fields.get("OverSubscribe", "") != EXCLUSIVE,
    )


class Slurm:
    name = "slurm"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = {"PATH": environ.get("PATH", "/usr/bin:/bin")}
        if environ.get("SLURM_CONF"):
            self.env["SLURM_CONF"] = environ["SLURM_CONF"]

    def _scontrol(self, *args: str) -> str:
        result = run(["scontrol", *args], env=self.env, timeout=SCONTROL_TIMEOUT_S)
        return result.stdout.decode(errors="replace")

    def allocation(self, job_id: str) -> Allocation:
        if not job_id.isdigit():
            raise SlurmError(f"job id {job_id!r} is not a number")
        fields = job_fields(self._scontrol("show", "job", "-o", job_id))
        node_list = fields.get("NodeList", "")
        if not node_list or node_list == "(null)":
            raise SlurmError(f"job {job_id} has no nodes yet")
        nodes = tuple(self._scontrol("show", "hostnames", node_list).split())
        return allocation_from(job_id, fields, nodes)
