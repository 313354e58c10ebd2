"""How a running job reports its progress and notices that it must stop.

`StatusProgress` is the engine's progress hook of one pull: it shows the layers and MiB
done in the record's status and status_message (at most every `PROGRESS_INTERVAL_S`), and
raises `JobCancelled` at its next report once the job's cancel event is set (its lease was
lost, or the gateway is stopping).
"""

from __future__ import annotations

import threading
import time

from shifter.gateway.lifecycle import Lifecycle
from shifter.gateway.records import Status
from shifter.gateway.store_jobs import Job

PROGRESS_INTERVAL_S = 2.0


class JobCancelled(Exception):
    """The job's worker must stop: its lease was lost or the gateway is stopping."""


class StatusProgress:
    """Engine progress shown in the record's status and status_message (throttled)."""

    def __init__(self, lifecycle: Lifecycle, job: Job, cancel: threading.Event) -> None:
        self.lifecycle, self.job, self.cancel = lifecycle, job, cancel
        self._lock = threading.Lock()
        self._total = self._done = self._layers = self._layers_done = 0
        self._shown = 0.0

    def _check(self) -> None:
        if self.cancel.is_set():
            raise JobCancelled(f"job {self.job.pk} cancelled")

    def begin(self, layers: int, total_bytes: int) -> None:
        self._layers, self._total = layers, total_bytes
        self._show(force=True)

    def advance(self, nbytes: int) -> None:
        self._check()
        with self._lock:
            self._done += nbytes
        self._show()

    def layer_done(self) -> None:
        with self._lock:
            self._layers_done += 1

    def stage(self, text: str) -> None:
        self._check()
        self.lifecycle.progress(self.job, Status.CONVERSION, "Converting image")

    def close(self) -> None:
        pass

    def _show(self, *, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not force and now - self._shown < PROGRESS_INTERVAL_S:
                return
            self._shown = now
            message = (f"Pulling layers: {self._layers_done} of {self._layers} done, "
                       f"{self._done >> 20} of {self._total >> 20} MiB")
        self.lifecycle.progress(self.job, Status.PULLING, message)
