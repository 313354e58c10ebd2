"""The records the node hooks keep between a job's prolog, its tasks and its epilog.

`STATE_DIR/NODE/job_ID.setup`: this node built the job's container (the epilog takes it
down). `STATE_DIR/NODE/job_ID.failed`: the prolog could not build it; the file holds the
reason, and the plugin's task hook prints it and fails every task of the job on this node
(the prolog itself must succeed, or Slurm 22.05 drains the node). `STATE_DIR/NODE/job_ID.ccm`:
a `--ccm` job's container is ready at the udiMount it names; the plugin chroots every task
of the job into it. `STATE_DIR/NODE/job_ID.extern`: the extern step has done its part
(extern_cgroup, extern_setup); the job's tasks wait for it. Keyed on the node name
as well as the job: nodes may share /run (several slurmd on one machine). The directory
is root's, readable by all (tasks run as the user); the plugin is built with the same path.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping

from shifter.errors import ShifterError

STATE_DIR = "/run/shifter-slurm"
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class JobRecords:
    def __init__(self, node: str, job_id: str, base: str = STATE_DIR) -> None:
        if not NODE_NAME.fullmatch(node) or not job_id.isdigit():
            raise ShifterError(f"unusable node name {node!r} or job id {job_id!r}")
        self.node, self.job_id = node, job_id
        self.directory = os.path.join(base, node)
        self.setup = os.path.join(self.directory, f"job_{job_id}.setup")
        self.failed = os.path.join(self.directory, f"job_{job_id}.failed")
        self.ccm = os.path.join(self.directory, f"job_{job_id}.ccm")
        self.extern = os.path.join(self.directory, f"job_{job_id}.extern")

    @classmethod
    def of_job(cls, environ: Mapping[str, str]) -> JobRecords:
        """This node's records of the job the hook's environment names."""
        return cls(environ.get("SLURMD_NODENAME", ""), environ.get("SLURM_JOB_ID", ""))

    def setup_uid(self) -> int | None:
        """The job's uid as the prolog recorded it (the batch system's) when this node built
        the job's container, else None."""
        try:
            with open(self.setup) as file:
                return int(file.read().strip())
        except (OSError, ValueError):
            return None

    def write(self, path: str, text: str) -> None:
        os.makedirs(self.directory, mode=0o755, exist_ok=True)
        temporary = f"{path}.tmp"
        with open(temporary, "w") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)

    def clear(self) -> None:
        for path in (self.setup, self.failed, self.ccm, self.extern):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
