"""What the node hooks need from a batch system, and the job's request as it arrives.

A second batch system implements `BatchSystem.allocation` (and calls `submit.pin_request`,
`nodes.prolog` and `nodes.epilog` from its own hooks); nothing else here knows Slurm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class JobRequest:
    """The shifter options of a job as the user gave them (raw text, not yet checked).
    `image_given`: `--image` was on the command line, even if empty."""

    image: str = ""
    volume: str = ""
    module: str = ""
    ccm: bool = False
    image_given: bool = False


@dataclass(frozen=True)
class Allocation:
    """A job's nodes as the batch system allocated them."""

    job_id: str
    uid: int
    nodes: tuple[str, ...]
    cpus: int
    shared: bool  # the job may share its nodes with other jobs: no setupRoot

    @property
    def tasks_per_node(self) -> int:
        """The original's rule: the job's CPUs divided by its nodes (at least 1)."""
        return max(1, self.cpus // max(1, len(self.nodes)))

    def nodespec(self) -> str:
        """setupRoot's `-N` value: `host/tasks-per-node` for every node, in order."""
        return " ".join(f"{node}/{self.tasks_per_node}" for node in self.nodes)


class BatchSystem(Protocol):
    name: str

    def allocation(self, job_id: str) -> Allocation:
        """The job's allocation, from the batch system's controller."""
        ...
