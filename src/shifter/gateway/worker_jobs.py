"""What a worker does with a claimed job: pull, import, expire one image, or settle the
access of its files.

Pull: resolve the location, decide whether the pull is private (contract §3.1: pulling it
needed credentials; checked with one anonymous manifest request when the pull has both
credentials and ACLs), pull and convert into a job directory in ExpandDirectory, run the
site's examiner on the image (examiner.py), publish the image and sidecar to the platform's
imageDir, then complete: under the image's lock, `.meta` and the files' access (the union
of the image's tags, image_files.py), then READY, then `settle` narrows what no tag needs
any more. An image already READY there in the same format (`ReuseCheck`) is not converted
again: only its `.meta` and sidecar are published.
Import: copy the checked file into the job directory, refuse privileged contents
(squashfs_contents.py), hash it, write its `.meta`, examine, publish, complete.
Expire: remove the files (unless another record still uses them), then the record.
Access: a tag of the image was expired while others remain; narrow its files to theirs.

Any `ShifterError` ends the job as FAILURE with its one-line message as status_message, so
the client sees the registry's (or the examiner's) reason. The job directory
(worker_dirs.py) is removed when the job ends; the pull's progress and cancellation are in
worker_progress.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shifter.engine.files import write_atomically
from shifter.engine.pull import PullOptions, pull_and_convert
from shifter.engine.source import ImageSource, RegistryLocation, resolve_source
from shifter.errors import ShifterError, ToolError
from shifter.gateway.access import ImageAccess
from shifter.gateway.config import GatewayConfig
from shifter.gateway.credentials import CredentialVault, RegistryCredentials
from shifter.gateway.examiner import Examiner
from shifter.gateway.image_files import ImageFiles
from shifter.gateway.imports import check_squashfs, copy_into, fasthash, open_for_user
from shifter.gateway.lifecycle import Lifecycle, Outcome, keeps_files, record_access
from shifter.gateway.manager import requester_from_params
from shifter.gateway.records import ImageRecord, Status
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.squashfs_contents import check_contents
from shifter.gateway.store_jobs import Job
from shifter.gateway.transfer import ImageTransfer, transfer_for
from shifter.gateway.worker_dirs import job_dir, reap_job_dirs, remove_tree
from shifter.gateway.worker_progress import JobCancelled, StatusProgress
from shifter.image.meta import format_meta
from shifter.registry.auth import RegistryAuthError
from shifter.registry.blobcache import BlobCache
from shifter.registry.client import RegistryClient
from shifter.registry.errors import AccessDeniedError, ImageNotFoundError

log = logging.getLogger(__name__)

NO_SPACE = "No space left on device"
CREDENTIALS_LOST = (
    "the gateway process that accepted this pull stopped before finishing it, and registry "
    "credentials are never stored; pull the image again"
)


class CredentialsLost(ShifterError):
    """A pull that needs credentials reached a process that does not hold them."""


class CredentialsRefused(ShifterError):
    """A pull would send credentials over plain http to a Location that does not allow it."""


@dataclass
class ReuseCheck:
    """The engine's `reuse` hook of one pull: the image file published for this id stays
    when a READY record vouches for it (`keeps_files`: same format; its access is changed
    in place if this tag needs another) and it is really there (a site may have deleted it
    by hand)."""

    lifecycle: Lifecycle
    transfer: ImageTransfer
    job: Job
    image_format: str

    def __call__(self, image_id: str) -> bool:
        job = self.job
        existing = self.lifecycle.ready_image(job, image_id, str(job.params["itype"]))
        if not keeps_files(existing, self.image_format):
            return False
        if not self.transfer.exists(f"{image_id}.{self.image_format}"):
            log.warning("job %s: image %s is READY on %s but its file is missing; converting "
                        "it again", job.pk, image_id, job.system)
            return False
        self.lifecycle.progress(job, Status.PULLING,
                                f"Image unchanged: {image_id} is already on {job.system}")
        return True


class JobRunner:
    """Runs one claimed job to its end (READY, FAILURE, expired) or until cancelled."""

    def __init__(
        self,
        config: GatewayConfig,
        lifecycle: Lifecycle,
        vault: CredentialVault,
        *,
        settings: ServiceSettings,
        transfers: Callable[[str], ImageTransfer] | None = None,
    ) -> None:
        self.config = config
        self.lifecycle = lifecycle
        self.vault = vault
        self.settings = settings
        self.transfers = transfers or (
            lambda system: transfer_for(config.platform(system), name=system)
        )
        self.examiner = Examiner(config.examiner, config.examiner_timeout.total_seconds(),
                                 lifecycle, where=config.where("examiner"))
        self.locations = {
            name: RegistryLocation(url=str(location.url), ca_file=location.sslcacert)
            for name, location in config.locations.items()
        }
        self.plain_http_credentials = {
            str(location.url): location.allow_plain_http_credentials
            for location in config.locations.values() if location.url
        }

    def run(self, job: Job, cancel: threading.Event) -> str:
        """Run the job; its outcome for the metrics: finished, failed or discarded.
        JobCancelled, ClaimLost and Deferred propagate (the pool handles them)."""
        if self.lifecycle.record(job) is None:
            self.lifecycle.discard(job, "its image record was removed")
            return "discarded"
        if job.attempts > self.settings.max_attempts:
            self.lifecycle.fail(job, f"the job was interrupted {job.attempts - 1} times "
                                     "(its gateway stopped each time); pull it again")
            return "failed"
        outcome = "finished"
        work = job_dir(Path(self.config.expand_directory), job)
        if job.attempts > 1:  # taken over: what the earlier attempt left is garbage now
            reap_job_dirs(work.parent, lambda pk, claim: pk != job.pk or claim == job.claim)
        try:
            self._run(job, work, cancel)
        except ShifterError as error:
            log.warning("job %s (%s %s) failed: %s", job.pk, job.kind,
                        job.params.get("tag"), error)
            self.lifecycle.fail(job, _one_line(error))
            outcome = "failed"
        except OSError as error:
            log.warning("job %s (%s) failed: %s", job.pk, job.kind, error)
            self.lifecycle.fail(job, f"{error.strerror or error}: {error.filename or ''}".strip())
            outcome = "failed"
        finally:
            remove_tree(work)
            if job.kind == "pull":
                self._prune_cache()
        # Finished, one way or the other (a deferred or cancelled job raised past this).
        if job.params.get("credential_ref"):
            self.vault.discard(str(job.params["credential_ref"]))
        return outcome

    def _run(self, job: Job, work: Path, cancel: threading.Event) -> None:
        if job.kind == "expire":
            self._expire(job)
            return
        if job.kind == "access":
            self._settle(job)
            return
        work.mkdir(mode=0o700, parents=True, exist_ok=True)
        if job.kind == "pull":
            self._pull(job, work, cancel)
        elif job.kind == "import":
            self._import(job, work)
        else:
            self.lifecycle.fail(job, f"unknown job kind {job.kind!r}")

    # -- pull ----------------------------------------------------------------------------

    def _pull(self, job: Job, work: Path, cancel: threading.Event) -> None:
        params = job.params
        tag = str(params["tag"])
        self.lifecycle.progress(job, Status.PULLING, "PULLING")
        user_acl = tuple(int(i) for i in params.get("user_acl", ()))
        group_acl = tuple(int(i) for i in params.get("group_acl", ()))
        source = resolve_source(tag, locations=self.locations,
                                default_location=self.config.default_image_location)
        credentials, private = self._registry_access(job, source, bool(user_acl or group_acl))
        record = self.lifecycle.record(job)
        image_format = (record.format if record else None) or self.config.default_image_format
        transfer = self.transfers(job.system)
        options = PullOptions(
            cache_dir=Path(self.config.cache_directory),
            platform=self.config.default_platform,
            image_format=image_format,
            locations=self.locations,
            default_location=self.config.default_image_location,
            credentials=credentials.as_tuple() if credentials else None,
            converter_options=self.config.converter_options_for(image_format),
            ownership=self.config.image_ownership,
            layer_concurrency=self.config.layer_download_concurrency,
            work_dir=work,
            progress=StatusProgress(self.lifecycle, job, cancel),
            reuse=ReuseCheck(self.lifecycle, transfer, job, image_format),
        )
        # What this pull asks for; the image's files get the union with its other tags'.
        asked = ImageAccess(private, user_acl, group_acl)
        pulled = pull_and_convert(tag, work, options=options,
                                  user_acl=asked.user_ids, group_acl=asked.group_ids)
        if cancel.is_set():
            raise JobCancelled(f"job {job.pk} cancelled")
        document = json.loads(pulled.sidecar_path.read_text())
        if not pulled.image_elsewhere:
            self.examiner.examine(job, pulled.image_path, pulled.id)
        self._publish(job, transfer, pulled.id, image_format, asked, Outcome(
            image_id=pulled.id, private=asked.private, user_acl=asked.user_ids,
            group_acl=asked.group_ids, requester=requester_from_params(params["requester"]),
            env=tuple(document.get("env") or ()), entry=document.get("entrypoint"),
            workdir=document.get("workdir"), labels=document.get("labels"),
        ), image=None if pulled.image_elsewhere else pulled.image_path,
            sidecar=pulled.sidecar_path, meta=pulled.meta_path, work=work)

    def _publish(
        self, job: Job, transfer: ImageTransfer, image_id: str, image_format: str,
        asked: ImageAccess, outcome: Outcome, *, image: Path | None, sidecar: Path | None,
        meta: Path, work: Path,
    ) -> None:
        """Publish a pull's or import's files and make its record READY.

        The image file is published unless a READY record of the image (found by the
        engine's reuse hook or since) vouches for the one in imageDir; its access and
        `.meta` are set under the image's lock in `complete`, then settled."""
        itype = str(job.params["itype"])
        expiries = self.lifecycle.check_not_expiring(job, job.system, image_id)
        existing = self.lifecycle.ready_image(job, image_id, itype)
        if image is not None and keeps_files(existing, image_format) and transfer.exists(
                f"{image_id}.{image_format}"):
            image = None  # converted meanwhile by another pull: its file stays
        self.lifecycle.progress(job, Status.TRANSFER, "Image unchanged: updating its metadata"
                                if image is None else "Transferring image")
        published = None
        if image is not None:
            published = asked
            if existing is not None and existing.format == image_format:
                published = asked.widened(record_access(existing))
            transfer.publish([image], access=published)
        if sidecar is not None:
            transfer.publish([sidecar], access=asked)
        files = ImageFiles(transfer, image_id, image_format, scratch=self._scratch,
                           meta_text=meta.read_text())
        remove_tree(work)  # before READY: a client seeing READY sees nothing left behind
        done = self.lifecycle.complete(job, dataclasses.replace(
            outcome, reused=image is None, published=published, expiries_seen=expiries), files)
        for settled in done.to_settle:
            self.lifecycle.settle(job.system, settled, self._files_for(transfer))
        if done.stale_file is not None:
            transfer.remove([done.stale_file])
        log.info("%s of %s:%s on %s is READY as %s%s", job.kind, itype, job.params["tag"],
                 job.system, image_id, "" if published else " (unchanged, not converted again)")

    def _prune_cache(self) -> None:
        """Keep the layer cache under CacheSizeLimit (what running pulls use stays)."""
        limit = self.config.cache_size_limit
        if limit is None:
            return
        try:
            BlobCache(self.config.cache_directory).prune(limit)
        except OSError as error:
            log.warning("could not prune the layer cache %s: %s", self.config.cache_directory,
                        error)

    @property
    def _scratch(self) -> Path:
        return Path(self.config.expand_directory)

    def _files_for(self, transfer: ImageTransfer) -> Callable[[ImageRecord], ImageFiles]:
        def files(record: ImageRecord) -> ImageFiles:
            assert record.image_id is not None
            return ImageFiles(transfer, record.image_id,
                              record.format or self.config.default_image_format,
                              scratch=self._scratch)

        return files

    def _registry_access(
        self, job: Job, source: ImageSource, restricted: bool
    ) -> tuple[RegistryCredentials | None, bool]:
        """The credentials to pull with, and whether the image is private (contract §3.1:
        its registry refuses anonymous pulls, and the pull asked for ACLs)."""
        if not job.needs_credentials:
            return None, False
        credentials = self.vault.get(str(job.params["credential_ref"]))
        if credentials is None:
            raise CredentialsLost(CREDENTIALS_LOST)
        if source.url.startswith("http://") and not self.plain_http_credentials.get(
                source.url, False):
            # Never in clear text unless the Location opts in. The API refuses such pulls;
            # this one was accepted before the configuration changed.
            raise CredentialsRefused(
                f"not sending your registry login to {source.url}: it is plain http",
                hint="pull it without a login for that registry (shifterimg logout), or ask "
                "the gateway's admins to serve it over https")
        if not restricted:
            return credentials, False
        if needs_credentials(source):
            return credentials, True
        return None, False  # anyone may pull it: the image is public

    # -- import --------------------------------------------------------------------------

    def _import(self, job: Job, work: Path) -> None:
        params = job.params
        requester = requester_from_params(params["requester"])
        self.lifecycle.progress(job, Status.HASHING, "HASHING")
        copy = work / "import.partial"
        fd = open_for_user(str(params["filepath"]), requester,
                           max_bytes=self.settings.import_max_bytes)
        try:
            copy_into(fd, copy)
        finally:
            os.close(fd)
        # The user may have rewritten the file meanwhile: the copy is what gets checked.
        with open(copy, "rb") as file:
            check_squashfs(file.fileno(), os.fstat(file.fileno()).st_size,
                           str(params["filepath"]), self.settings.import_max_bytes)
        check_contents(copy, str(params["filepath"]))
        image_id = fasthash(copy)
        image = work / f"{image_id}.squashfs"
        os.replace(copy, image)
        os.chmod(image, 0o644)
        meta = work / f"{image_id}.meta"
        text, _ = format_meta(str(params["format"]))
        write_atomically(meta, text.encode())
        self.examiner.examine(job, image, image_id)
        self._publish(job, self.transfers(job.system), image_id, str(params["format"]),
                      ImageAccess.PUBLIC, Outcome(image_id=image_id, private=False, user_acl=(),
                                                  group_acl=(), requester=requester),
                      image=image, sidecar=None, meta=meta, work=work)

    # -- access --------------------------------------------------------------------------

    def _settle(self, job: Job) -> None:
        """An `access` job: a tag of the image was expired; its files narrow to the rest."""
        image_id = str(job.params["image_id"])
        self.lifecycle.settle(job.system, image_id, self._files_for(self.transfers(job.system)))
        self.lifecycle.finish(job, "settled")

    # -- expire --------------------------------------------------------------------------

    def _expire(self, job: Job) -> None:
        image_id = job.params.get("image_id")
        itype = str(job.params.get("itype", "docker"))
        if image_id and self.lifecycle.ready_image(job, str(image_id), itype) is None:
            fmt = str(job.params.get("format") or self.config.default_image_format)
            self.transfers(job.system).remove(
                [f"{image_id}.{fmt}", f"{image_id}.json", f"{image_id}.meta"]
            )
        if self.lifecycle.expired(job):
            log.info("image %s on %s EXPIRED", image_id, job.system)


def needs_credentials(source: ImageSource) -> bool:
    """Whether the registry refuses an anonymous request for the image's manifest."""
    try:
        with RegistryClient(source.url, ca_file=source.ca_file) as client:
            client.get_manifest(source.repository, source.tag_or_digest, source.display)
    except (AccessDeniedError, RegistryAuthError, ImageNotFoundError):
        # Registries answer 404 as well as 401 to hide a private repository.
        return True
    return False


def _one_line(error: ShifterError) -> str:
    """A failed job's status_message: the error's first line and, for a tool, the last
    thing it said (the cause: "No space left on device", not only an exit status), with
    the next step when the gateway's own disk is full."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    message = lines[0]
    if isinstance(error, ToolError):
        said = [line.strip() for line in error.stderr_tail.splitlines() if line.strip()]
        causes = [line for line in said if NO_SPACE in line] or said[-1:]
        if causes:
            message = f"{message}: {causes[-1]}"
    if NO_SPACE in message and "gateway" not in message:
        message += " (the image gateway's scratch or image space is full: its admins must " \
            "free space, the pull can be retried then)"
    return message[:1000]
