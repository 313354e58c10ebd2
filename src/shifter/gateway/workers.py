"""The worker threads of one gateway process, and the heartbeat that keeps their leases.

`WorkerThreads` threads each loop: claim a job from the store (any job of any gateway,
within the credential rule of `store_jobs`), run it, repeat; with nothing to do they sleep
until this process accepts work (`wake`) or `poll_s` passes (work accepted by another
gateway process). One heartbeat thread renews this process's `instances` row and the lease
of every job its workers hold, every lease/3 seconds; a renewal that finds the claim gone
cancels that job's worker at its next progress report. Stopping cancels the running jobs
and puts them back in the queue, so another gateway (or this one, restarted) resumes them
at once instead of waiting for the lease to run out.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from shifter.gateway import store_jobs as jobs
from shifter.gateway.failures import INTERNAL_ERROR
from shifter.gateway.lifecycle import ClaimLost, Deferred
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store import MetadataStore, StoreError
from shifter.gateway.store_jobs import Job
from shifter.gateway.worker_dirs import held_checker, reap_job_dirs
from shifter.gateway.worker_jobs import JobRunner
from shifter.gateway.worker_progress import JobCancelled

log = logging.getLogger(__name__)

DEFER_DELAY_S = 1.0
REAP_EVERY_HEARTBEATS = 30


def new_instance_id() -> str:
    """`host:pid:random`: unique per process start, readable in the jobs table."""
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class WorkerPool:
    """Worker threads and the heartbeat thread of one gateway process."""

    def __init__(
        self,
        runner: JobRunner,
        store: MetadataStore,
        *,
        instance_id: str,
        settings: ServiceSettings,
        threads: int,
        expand_directory: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.runner = runner
        self.store = store
        self.instance_id = instance_id
        self.settings = settings
        self.thread_count = threads
        self.expand_directory = expand_directory
        self.clock = clock
        self._stopping = threading.Event()
        self._wakeup = threading.Condition()
        self._generation = 0
        self._held_lock = threading.Lock()
        self._held: dict[int, tuple[str, threading.Event]] = {}
        self._threads: list[threading.Thread] = []
        self.on_job_done: Callable[[Job, str], None] = lambda job, outcome: None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Register this process, reap what earlier runs left, start the threads."""
        self.heartbeat()
        self.reap()
        for number in range(self.thread_count):
            self._spawn(self._work, f"imagegw-worker-{number}")
        self._spawn(self._beat, "imagegw-heartbeat")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel running jobs (they return to the queue) and stop every thread."""
        self._stopping.set()
        with self._held_lock:
            for _, cancel in self._held.values():
                cancel.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self._threads if thread.is_alive()]
        if stuck:
            log.warning("threads still busy at shutdown (their leases will expire): %s", stuck)
        try:
            self.store.write(lambda conn: jobs.leave(conn, self.instance_id),
                             changes_records=False)
        except StoreError as error:
            log.warning("could not deregister from the metadata store: %s", error)

    def wake(self) -> None:
        """Work was queued: idle workers look for it now."""
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def reap(self) -> None:
        """Jobs whose lease ran out go back to the queue; their job directories go."""
        now = self.clock()
        requeued = self.store.write(lambda conn: jobs.requeue_expired(conn, now=now),
                                    changes_records=False)
        self.store.write(lambda conn: jobs.forget_old(
            conn, now=now, retention_s=self.settings.job_retention_s), changes_records=False)
        removed = reap_job_dirs(self.expand_directory, held_checker(self.store))
        if requeued or removed:
            log.info("reaped %d expired lease(s) and %d job directory(ies)", requeued, removed)

    # -- workers -------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wakeup:
                generation = self._generation
            try:
                job = self.store.write(lambda conn: jobs.claim_next(
                    conn, self.instance_id, lease_s=self.settings.lease_s, now=self.clock()),
                    changes_records=False)
            except StoreError as error:
                log.error("cannot claim jobs: %s", error)
                job = None
            if job is not None:
                try:
                    self._run(job)
                except Exception:  # the store failing while recording an outcome
                    log.exception("job %s: could not record its outcome", job.pk)
                continue
            with self._wakeup:
                if self._generation == generation and not self._stopping.is_set():
                    self._wakeup.wait(self.settings.poll_s)

    def _run(self, job: Job) -> None:
        assert job.claim is not None
        cancel = threading.Event()
        with self._held_lock:
            self._held[job.pk] = (job.claim, cancel)
        log.info("job %s (%s %s on %s) claimed, attempt %d", job.pk, job.kind,
                 job.params.get("tag") or job.params.get("image_id"), job.system, job.attempts)
        try:
            outcome = self.runner.run(job, cancel)
        except (JobCancelled, ClaimLost) as stop:
            outcome = self._cancelled(job, stop)
        except Deferred as wait:
            log.info("job %s deferred: %s", job.pk, wait)
            self.runner.lifecycle.release(job, DEFER_DELAY_S)
            outcome = "deferred"
        except Exception:
            log.exception("job %s failed unexpectedly", job.pk)
            outcome = "crashed"
            self.runner.lifecycle.fail(job, INTERNAL_ERROR)
        finally:
            with self._held_lock:
                self._held.pop(job.pk, None)
        self.on_job_done(job, outcome)

    def _cancelled(self, job: Job, stop: Exception) -> str:
        if self._stopping.is_set() and not isinstance(stop, ClaimLost):
            released = self.runner.lifecycle.release(job, 0.0)
            log.info("job %s returned to the queue at shutdown (%s)", job.pk,
                     "done" if released else "it was taken over already")
            return "released"
        log.warning("job %s abandoned: %s", job.pk, stop)
        return "lost"

    # -- heartbeat -----------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Renew this process's liveness and every held lease; cancel lost jobs."""
        now = self.clock()
        self.store.write(lambda conn: jobs.heartbeat(
            conn, self.instance_id, host=socket.gethostname()[:255], pid=os.getpid(), now=now),
            changes_records=False)
        with self._held_lock:
            held = dict(self._held)
        for pk, (claim, cancel) in held.items():
            kept = self.store.write(lambda conn, pk=pk, claim=claim: jobs.renew(
                conn, pk, claim, lease_s=self.settings.lease_s, now=self.clock()),
                changes_records=False)
            if not kept:
                log.warning("job %s: lease lost (taken over by another gateway)", pk)
                cancel.set()

    def _beat(self) -> None:
        beats = 0
        while not self._stopping.wait(self.settings.heartbeat_s):
            try:
                self.heartbeat()
                beats += 1
                if beats % REAP_EVERY_HEARTBEATS == 0:
                    self.reap()
            except StoreError as error:
                log.error("heartbeat failed: %s", error)
