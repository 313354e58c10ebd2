"""At submit (sbatch, salloc, srun outside a job), as the user: check the job's shifter
options and pin its image, so that nothing a user controls reaches the root prolog
unchecked and no node has to ask the image gateway.

- `--image`: parsed with the site's defaultImageType; `docker:`/`custom:` looked up once at
  the gateway (READY images only; private ones only for allowed users; the gateway down or
  the site's `system` unknown to it are errors) and replaced by `id:ID`; every image must
  then have `<imagePath>/ID.meta` that this user may use and read. `local:` needs
  allowLocalChroot=1.
- `--volume`: the user rules of `shifter --volume` (repeats and `;` lists), and each source
  must already exist (the container is built before the job starts).
- `--module`: the module selection rules.

The result is the environment the job carries (`SHIFTER_IMAGETYPE`, `SHIFTER_IMAGE`,
`SHIFTER_IMAGEREQUEST` after a lookup, `SHIFTER_VOLUME`, `SHIFTER_MODULE`): the plugin puts
it in the job's control environment (the prolog's `SPANK_SHIFTER_*`) and the job's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from shifter.errors import ShifterError
from shifter.image.descriptor import ImageDescriptor, ImageType, parse_descriptor
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.image.lookup import gateway_lookup
from shifter.runtime.image.source import check_acl, check_readable, find_image
from shifter.runtime.site.modules import select_modules
from shifter.runtime.volumes.policy import check_user_volume
from shifter.runtime.volumes.spec import parse_volume_specs
from shifter.wlm.interface import JobRequest

IMAGE_HINT = "e.g. --image=docker:ubuntu:22.04; `shifterimg images` lists what is ready"


class SubmitError(ShifterError):
    """The job's shifter options cannot work: the job is not submitted."""


def _lookup(descriptor: ImageDescriptor, config: UdiRootConfig, environ: Mapping[str, str]) -> str:
    try:
        return gateway_lookup(descriptor, config, environ)
    except ShifterError as error:
        raise SubmitError(
            f"--image={descriptor}: the image gateway cannot give this image: {error}",
            hint=error.hint or f"pull it first: shifterimg pull {descriptor}",
        ) from error


def _image(
    text: str,
    config: UdiRootConfig,
    environ: Mapping[str, str],
    uid: int,
    gids: Sequence[int],
) -> dict[str, str]:
    descriptor = parse_descriptor(text, config.default_image_type)
    if descriptor.type is ImageType.LOCAL:
        if not config.allow_local_chroot:
            raise SubmitError(
                f"--image={text}: local images are not allowed on this system",
                hint="the site sets allowLocalChroot=1 to allow them",
            )
        return {"SHIFTER_IMAGETYPE": "local", "SHIFTER_IMAGE": descriptor.spec}
    pinned = {}
    image_id = descriptor.spec
    if descriptor.type is not ImageType.ID:
        image_id = _lookup(descriptor, config, environ)
        pinned["SHIFTER_IMAGEREQUEST"] = str(descriptor)
    image = find_image(parse_descriptor(f"id:{image_id}", None), config, environ={})
    check_acl(image, uid, gids)
    check_readable(image)
    return {"SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": image.id, **pinned}


def _volumes(text: str) -> None:
    for spec in parse_volume_specs(text, source="--volume"):
        check_user_volume(spec, "--volume")
        if not os.path.isdir(spec.source):
            raise SubmitError(
                f"--volume: {spec.source} is not a directory you can reach",
                hint="volume sources must exist before the job is submitted",
            )


def _ccm(request: JobRequest, config: UdiRootConfig, uid: int, sshd: bool) -> dict[str, str]:
    """--ccm (the plugin offers it only with enable_ccm=1, which needs enable_sshd=1): the
    site's own environment, `local:/`, as the job's container, with the job's sshd."""
    import pwd

    from shifter.wlm.sshkey import job_public_key

    if request.image or request.volume or request.module:
        raise SubmitError("--ccm runs the site's own environment: it takes no --image, "
                          "--volume or --module", hint="submit with --ccm alone")  # fmt: skip
    if not sshd:
        raise SubmitError("--ccm needs the job's sshd, which this site does not start",
                          hint="the site sets enable_sshd=1 with enable_ccm=1")  # fmt: skip
    if not config.allow_local_chroot:
        raise SubmitError(
            "--ccm makes a container of the site's own environment (local:/), which this "
            "system does not allow",
            hint="the site sets allowLocalChroot=1 in udiRoot.conf for CCM",
        )
    return {"SHIFTER_IMAGETYPE": "local", "SHIFTER_IMAGE": "/", "SHIFTER_CCM": "1",
            "SHIFTER_SSH_PUBKEY": job_public_key(pwd.getpwuid(uid).pw_dir)}


def pin_request(
    request: JobRequest,
    config: UdiRootConfig,
    environ: Mapping[str, str],
    *,
    uid: int,
    gids: Sequence[int],
    sshd: bool = False,
) -> dict[str, str]:
    """The job's shifter environment (see the module docstring); `SubmitError` and the
    parsers' errors say what is wrong. `sshd`: the site's enable_sshd (the job's key pair,
    sshkey.py)."""
    if request.ccm:
        return _ccm(request, config, uid, sshd)
    if request.image_given and not request.image.strip():
        raise SubmitError("--image must not be empty", hint=IMAGE_HINT)
    if request.volume and not request.image:
        raise SubmitError(
            "--volume needs --image: shifter volumes belong to the job's image",
            hint="add --image=TYPE:TAG, or use shifter --volume inside the job",
        )
    env: dict[str, str] = {}
    if request.module:
        select_modules(config, request.module, "--module")
        env["SHIFTER_MODULE"] = request.module
    if request.volume:
        _volumes(request.volume)
        env["SHIFTER_VOLUME"] = request.volume
    if request.image:
        env.update(_image(request.image.strip(), config, environ, uid, gids))
        if sshd:
            import pwd

            from shifter.wlm.sshkey import job_public_key

            env["SHIFTER_SSH_PUBKEY"] = job_public_key(pwd.getpwuid(uid).pw_dir)
    return env
