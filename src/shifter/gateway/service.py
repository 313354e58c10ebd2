"""One gateway process's parts, wired together: store, manager, workers, authentication.

`GatewayService.start()` opens the metadata store (creating or upgrading its schema),
checks the directories, starts the worker pool (which first reaps what a killed gateway
left: expired leases, job directories); `stop()` undoes it. The HTTP app (`app.py`) owns
one service for the life of its process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from shifter.gateway import store_jobs as jobs
from shifter.gateway.authn import Authenticator
from shifter.gateway.config import GatewayConfig
from shifter.gateway.credentials import CredentialVault
from shifter.gateway.failures import Unavailable
from shifter.gateway.health import HealthCheck
from shifter.gateway.lifecycle import Lifecycle
from shifter.gateway.manager import ImageManager
from shifter.gateway.metrics import GatewayMetrics
from shifter.gateway.private_dirs import make_private
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store import MetadataStore, StoreError
from shifter.gateway.store_jobs import Job
from shifter.gateway.worker_jobs import JobRunner
from shifter.gateway.workers import WorkerPool, new_instance_id

log = logging.getLogger(__name__)


class GatewayService:
    def __init__(
        self,
        config: GatewayConfig,
        settings: ServiceSettings | None = None,
        *,
        worker_threads: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.settings = settings or ServiceSettings()
        self.worker_threads = config.worker_threads if worker_threads is None else worker_threads
        self.clock = clock
        self.instance_id = new_instance_id()
        self.vault = CredentialVault()
        self.authenticator = Authenticator(config)
        self.metrics = GatewayMetrics(self._queue_counts)
        self.health = HealthCheck(config, lambda: self.store)
        self._store: MetadataStore | None = None
        self._manager: ImageManager | None = None
        self._pool: WorkerPool | None = None

    @property
    def store(self) -> MetadataStore:
        if self._store is None:
            raise Unavailable("the gateway is not started")
        return self._store

    @property
    def manager(self) -> ImageManager:
        if self._manager is None:
            raise Unavailable("the gateway is not started")
        return self._manager

    @property
    def pool(self) -> WorkerPool | None:
        return self._pool

    def start(self) -> None:
        make_private(self.config.expand_directory, key="ExpandDirectory")
        make_private(self.config.cache_directory, key="CacheDirectory")
        store = self._store = MetadataStore.open(self.config.metadata_store_url)
        lifecycle = Lifecycle(self.config, store, instance_id=self.instance_id, clock=self.clock)
        runner = JobRunner(self.config, lifecycle, self.vault, settings=self.settings)
        pool = WorkerPool(
            runner, store, instance_id=self.instance_id, settings=self.settings,
            threads=self.worker_threads, expand_directory=Path(self.config.expand_directory),
            clock=self.clock,
        )
        pool.on_job_done = self._count_job
        self._manager = ImageManager(
            self.config, store, instance_id=self.instance_id, settings=self.settings,
            vault=self.vault, clock=self.clock, on_new_job=pool.wake,
        )
        self._manager.usage.start()
        pool.start()
        self._pool = pool
        log.info("gateway %s started: %d worker thread(s), platforms %s", self.instance_id,
                 self.worker_threads, ", ".join(sorted(self.config.platforms)))

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool = None
        if self._manager is not None:
            self._manager.usage.stop()
        if self._store is not None:
            self._store.close()
            self._store = None
        log.info("gateway %s stopped", self.instance_id)

    def _count_job(self, job: Job, outcome: str) -> None:
        self.metrics.jobs.labels(job.kind, outcome).inc()

    def _queue_counts(self) -> dict[str, int]:
        if self._store is None:
            return {}
        try:
            with self._store.reading() as conn:
                return jobs.unfinished_counts(conn)
        except StoreError:
            return {}
