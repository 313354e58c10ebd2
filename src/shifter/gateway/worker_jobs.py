"""What a worker does with a claimed job: pull, import or expire one image.

Pull: resolve the location, decide whether the image is private (contract §3.1: pulling it
needed credentials; checked with one anonymous manifest request when the pull has both
credentials and ACLs), pull and convert into a job directory in ExpandDirectory, publish
the image, sidecar and `.meta` to the platform's imageDir, then mark the record READY. An
image already READY there in the same format and with the same access (`ReuseCheck`) is
not converted again: only its `.meta` (and a missing sidecar) is published.
Import: copy the checked file into the job directory, hash it, write its `.meta`, publish.
Expire: remove the files (unless another record still uses them), then the record.

Any `ShifterError` ends the job as FAILURE with its one-line message as status_message, so
the client sees the registry's reason. The job directory (worker_dirs.py) is removed when
the job ends; the pull's progress and cancellation are in worker_progress.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shifter.engine.files import write_atomically
from shifter.engine.pull import PulledImage, PullOptions, pull_and_convert
from shifter.engine.source import ImageSource, RegistryLocation, resolve_source
from shifter.errors import ShifterError
from shifter.gateway.access import ImageAccess
from shifter.gateway.config import GatewayConfig
from shifter.gateway.credentials import CredentialVault, RegistryCredentials
from shifter.gateway.imports import check_squashfs, copy_into, fasthash, open_for_user
from shifter.gateway.lifecycle import Deferred, Lifecycle, Outcome, final_acls, keeps_files
from shifter.gateway.manager import requester_from_params
from shifter.gateway.records import ImageRecord, Status
from shifter.gateway.settings import ServiceSettings
from shifter.gateway.store_jobs import Job
from shifter.gateway.transfer import ImageTransfer, transfer_for
from shifter.gateway.worker_dirs import job_dir, reap_job_dirs, remove_tree
from shifter.gateway.worker_progress import JobCancelled, StatusProgress
from shifter.image.meta import format_meta
from shifter.registry.auth import RegistryAuthError
from shifter.registry.client import RegistryClient
from shifter.registry.errors import AccessDeniedError, ImageNotFoundError

log = logging.getLogger(__name__)

CREDENTIALS_LOST = (
    "the gateway process that accepted this pull stopped before finishing it, and registry "
    "credentials are never stored; pull the image again"
)


class CredentialsLost(ShifterError):
    """A pull that needs credentials reached a process that does not hold them."""


@dataclass
class ReuseCheck:
    """The engine's `reuse` hook of one pull: the image file published for this id stays
    when a READY record vouches for it (`keeps_files`: same format, same access; other
    ACLs mean converting again, a file's mode and ACL are never changed in place) and it
    is really there (a site may have deleted it by hand)."""

    lifecycle: Lifecycle
    transfer: ImageTransfer
    job: Job
    image_format: str
    acls_after: Callable[[ImageRecord | None], tuple[tuple[int, ...], tuple[int, ...], bool]]
    sidecar_missing: bool = False

    def __call__(self, image_id: str) -> bool:
        job = self.job
        existing = self.lifecycle.ready_image(job, image_id, str(job.params["itype"]))
        users, groups, private = self.acls_after(existing)
        if not keeps_files(existing, self.image_format, ImageAccess(private, users, groups)):
            return False
        if not self.transfer.exists(f"{image_id}.{self.image_format}"):
            log.warning("job %s: image %s is READY on %s but its file is missing; converting "
                        "it again", job.pk, image_id, job.system)
            return False
        self.sidecar_missing = not self.transfer.exists(f"{image_id}.json")
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
        self.locations = {
            name: RegistryLocation(url=str(location.url), ca_file=location.sslcacert)
            for name, location in config.locations.items()
        }

    def run(self, job: Job, cancel: threading.Event) -> None:
        """Run the job; JobCancelled and ClaimLost propagate (the pool handles them)."""
        if self.lifecycle.record(job) is None:
            self.lifecycle.discard(job, "its image record was removed")
            return
        if job.attempts > self.settings.max_attempts:
            self.lifecycle.fail(job, f"the job was interrupted {job.attempts - 1} times "
                                     "(its gateway stopped each time); pull it again")
            return
        work = job_dir(Path(self.config.expand_directory), job)
        if job.attempts > 1:  # taken over: what the earlier attempt left is garbage now
            reap_job_dirs(work.parent, lambda pk, claim: pk != job.pk or claim == job.claim)
        try:
            self._run(job, work, cancel)
        except ShifterError as error:
            log.warning("job %s (%s %s) failed: %s", job.pk, job.kind,
                        job.params.get("tag"), error)
            self.lifecycle.fail(job, _one_line(error))
        except OSError as error:
            log.warning("job %s (%s) failed: %s", job.pk, job.kind, error)
            self.lifecycle.fail(job, f"{error.strerror or error}: {error.filename or ''}".strip())
        finally:
            remove_tree(work)
        # Finished, one way or the other (a deferred or cancelled job raised past this).
        if job.params.get("credential_ref"):
            self.vault.discard(str(job.params["credential_ref"]))

    def _run(self, job: Job, work: Path, cancel: threading.Event) -> None:
        if job.kind == "expire":
            self._expire(job)
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
        tag, itype = str(params["tag"]), str(params["itype"])
        self.lifecycle.progress(job, Status.PULLING, "PULLING")
        user_acl = tuple(int(i) for i in params.get("user_acl", ()))
        group_acl = tuple(int(i) for i in params.get("group_acl", ()))
        source = resolve_source(tag, locations=self.locations,
                                default_location=self.config.default_image_location)
        credentials, private = self._registry_access(job, source, bool(user_acl or group_acl))
        record = self.lifecycle.record(job)
        image_format = (record.format if record else None) or self.config.default_image_format
        acls_after = functools.partial(  # of the image once this pull is READY
            final_acls, private=private, user_acl=user_acl, group_acl=group_acl,
            requester=requester_from_params(params["requester"]))
        transfer = self.transfers(job.system)
        reuse = ReuseCheck(self.lifecycle, transfer, job, image_format, acls_after)
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
            reuse=reuse,
        )
        written = (user_acl, group_acl) if private else ((), ())
        pulled = pull_and_convert(tag, work, options=options,
                                  user_acl=written[0], group_acl=written[1])
        if cancel.is_set():
            raise JobCancelled(f"job {job.pk} cancelled")
        existing = self.lifecycle.ready_image(job, pulled.id, itype)
        users, groups, private = acls_after(existing)
        document = json.loads(pulled.sidecar_path.read_text())
        if (users, groups) != written:
            _rewrite_meta(pulled, document, users, groups)
        expiries = self.lifecycle.check_not_expiring(job, job.system, pulled.id)
        reused = pulled.image_elsewhere
        access = ImageAccess(private, users, groups)
        if reused and not keeps_files(existing, image_format, access):  # changed meanwhile
            raise Deferred(f"image {pulled.id} changed while it was re-pulled")
        files = [pulled.image_path, pulled.sidecar_path, pulled.meta_path]
        if reused:  # the sidecar stays too (it describes the conversion), unless missing
            files = files[1 if reuse.sidecar_missing else 2:]
        self.lifecycle.progress(job, Status.TRANSFER, "Image unchanged: updating its metadata"
                                if reused else "Transferring image")
        transfer.publish(files, access=access)
        remove_tree(work)  # before READY: a client seeing READY sees nothing left behind
        done = self.lifecycle.complete(job, Outcome(
            image_id=pulled.id, private=private, user_acl=users, group_acl=groups,
            env=tuple(document.get("env") or ()), entry=document.get("entrypoint"),
            workdir=document.get("workdir"), labels=document.get("labels"), reused=reused,
            expiries_seen=expiries,
        ))
        log.info("pull of %s:%s on %s is READY as %s%s", itype, tag, job.system,
                 done.image_id, " (unchanged, not converted again)" if reused else "")

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
        if source.url.startswith("http://"):
            # Never in clear text: the pull goes on anonymously and, if the registry wants
            # credentials, fails with its refusal.
            log.warning("job %s: not sending registry credentials over plain http to %s",
                        job.pk, source.url)
            return None, False
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
        image_id = fasthash(copy)
        image = work / f"{image_id}.squashfs"
        os.replace(copy, image)
        os.chmod(image, 0o644)
        meta = work / f"{image_id}.meta"
        text, _ = format_meta(str(params["format"]))
        write_atomically(meta, text.encode())
        expiries = self.lifecycle.check_not_expiring(job, job.system, image_id)
        self.lifecycle.progress(job, Status.TRANSFER, "TRANSFER")
        self.transfers(job.system).publish([image, meta], access=ImageAccess.PUBLIC)
        remove_tree(work)
        self.lifecycle.complete(job, Outcome(image_id=image_id, private=False, user_acl=(),
                                             group_acl=(), expiries_seen=expiries))
        log.info("import of %s on %s is READY as %s", params["tag"], job.system, image_id)

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


def _rewrite_meta(pulled: PulledImage, document: dict[str, object],
                  users: tuple[int, ...], groups: tuple[int, ...]) -> None:
    """The `.meta` with the ACLs the image will really have (merged with an existing
    image's), written the way the engine writes it."""
    text, _ = format_meta(
        pulled.image_format,
        env=tuple(document.get("env") or ()),  # type: ignore[arg-type]
        entrypoint=document.get("entrypoint"),  # type: ignore[arg-type]
        cmd=document.get("cmd"),  # type: ignore[arg-type]
        workdir=document.get("workdir"),  # type: ignore[arg-type]
        user_acl=users,
        group_acl=groups,
    )
    write_atomically(pulled.meta_path, text.encode())


def _one_line(error: ShifterError) -> str:
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return lines[0][:1000]
