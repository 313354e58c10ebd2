"""setupRoot: build a job's container at udiMount, as root, in the host's mount namespace,
for the job's user to enter with `shifter` (enter.py) until unsetupRoot (teardown.py).

Everything a user controls is checked as on the unprivileged path before anything is
mounted: the image is found only through imagePath (`id:ID` names `<imagePath>/ID.meta`;
other types as `shifter` resolves them) and refused when it is private to others, whether
or not its file is readable; `-u`/`-U`/`-G` must name a real user (not root) and agree;
volumes pass the user rules, and their sources are looked up with the user's credentials;
modules pass the selection rules. Then:

1. udiMount and loopMount must be free (a container is already there: unsetupRoot first);
   on a host where they sit on a shared mount, each is first made a private mount point
   (bound onto itself), so nothing mounted there propagates to other namespaces;
2. the image on its node-wide loop device at loopMount (loopdev.py), the tree at udiMount
   (vfs.py in `BuildMode.ROOT`: site filesystems and hooks as root, /etc for the user,
   modules, the GPUs of `--gpus` (gpu.py), the image, the volumes, perNodeCache volumes);
3. `var/shifterConfig.json` (the original's signature) and `var/shifterEnter.dat` (the
   enter record), written last: a half-built tree never matches a request.

A failure at any step tears down whatever was mounted before the error is reported.

The hostsfile (`-N "host/count ..."`, hostsfile.py) is written to `/var/hostsfile`. With
`-s PUBKEY` the job's sshd (sshd.py) gets its files in the container's /etc/ssh during the
build and is started, as the user, once the container is complete; if it cannot start,
the container is torn down and setupRoot fails.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError
from shifter.image.descriptor import parse_descriptor
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.identity.jobns import pin_job_namespace
from shifter.runtime.identity.user import Identity, UserRecord, lookup_user, refuse_root
from shifter.runtime.image import loopdev
from shifter.runtime.image.source import ImageNotFoundError, check_acl, find_image
from shifter.runtime.job import sshd
from shifter.runtime.job.teardown import container_mounts, container_roots, teardown
from shifter.runtime.rootfs.build import BuildMode, ContainerPlan, build_container, check_site
from shifter.runtime.rootfs.etc import plan_etc
from shifter.runtime.rootfs.hostsfile import hostsfile_text, parse_nodespec
from shifter.runtime.rootfs.mountinfo import MountEntry, mount_containing, read_mountinfo
from shifter.runtime.rootfs.signature import EnterRecord, container_signature
from shifter.runtime.site.environment import site_env_steps
from shifter.runtime.site.gpu import plan_gpus
from shifter.runtime.site.modules import select_modules
from shifter.runtime.trace import Steps
from shifter.runtime.volumes.policy import check_user_volume
from shifter.runtime.volumes.spec import parse_volume_specs
from shifter.sys.mount import MountFlag, mount


class SetupError(ShifterError):
    """setupRoot cannot build the container it was asked for."""


class SetupRequest:
    """setupRoot's command line. (Plain class.)"""

    __slots__ = (
        "gid",
        "gpus",
        "image_id",
        "image_type",
        "modules",
        "nodespec",
        "ssh_pubkey",
        "uid",
        "user",
        "volumes",
    )

    def __init__(
        self,
        image_type: str,
        image_id: str,
        *,
        volumes: tuple[str, ...] = (),
        user: str | None = None,
        uid: int | None = None,
        gid: int | None = None,
        modules: str | None = None,
        ssh_pubkey: str | None = None,
        nodespec: str | None = None,
        gpus: str | None = None,
    ) -> None:
        self.image_type = image_type
        self.image_id = image_id
        self.volumes = volumes
        self.user = user
        self.uid = uid
        self.gid = gid
        self.modules = modules
        self.ssh_pubkey = ssh_pubkey
        self.nodespec = nodespec
        self.gpus = gpus  # the job's GPUs (--gpus, CUDA_VISIBLE_DEVICES syntax), gpu.py


class SetupResult:
    """What was built: the signature, the image and its loop device."""

    __slots__ = ("image_path", "loop_device", "signature")

    def __init__(self, signature: str, image_path: str, loop_device: str | None) -> None:
        self.signature = signature
        self.image_path = image_path
        self.loop_device = loop_device


def job_identity(config: UdiRootConfig, request: SetupRequest) -> Identity:
    """The job's user from `-u`, `-U` and `-G`: a real user, not root, names that agree."""
    import pwd

    if not request.user:
        raise SetupError(
            "setupRoot needs the job's user (-u USER)",
            hint="without it no shifter could ever match the container",
        )
    uid = request.uid
    if uid is None:
        try:
            uid = pwd.getpwnam(request.user).pw_uid
        except KeyError:
            raise SetupError(f"-u {request.user}: no such user") from None
    record = lookup_user(uid, config)
    if record.name != request.user:
        raise SetupError(f"-u {request.user} and -U {uid} disagree: uid {uid} is {record.name}")
    gid = record.gid if request.gid is None else request.gid
    refuse_root(uid, gid)
    try:
        listed = os.getgrouplist(record.name, gid)
    except OSError as error:
        raise SetupError(f"cannot look up the groups of {record.name}: {error}") from None
    groups = tuple(dict.fromkeys(gid if group == 0 else group for group in listed))
    user = UserRecord(record.name, uid, gid, record.gecos, record.home, record.shell)
    return Identity(user, groups)


def _make_private(paths: tuple[str, ...], entries: list[MountEntry]) -> None:
    """Bind each path onto itself, private, when it sits on a shared mount."""
    for path in paths:
        containing = mount_containing(entries, path)
        if containing is not None and containing.shared:
            mount(path, path, None, MountFlag.BIND)
            mount(None, path, None, MountFlag.PRIVATE)


def setup_root(
    config: UdiRootConfig,
    request: SetupRequest,
    *,
    config_stamp: tuple[int, ...],
    steps: Steps | None = None,
) -> SetupResult:
    """Build the container (see the module docstring); `config_stamp`: udiRoot.conf's
    `signature.file_stamp` taken before it was read."""
    steps = steps or Steps(False)
    hostsfile = None
    if request.nodespec is not None:
        hostsfile = hostsfile_text(parse_nodespec(request.nodespec)).encode()
    identity = job_identity(config, request)
    user = identity.user
    modules = select_modules(config, request.modules, "-m")
    descriptor = parse_descriptor(f"{request.image_type}:{request.image_id}", None)
    image = find_image(descriptor, config, environ={})
    check_acl(image, user.uid, identity.all_gids)
    if not os.path.exists(image.path):
        raise ImageNotFoundError(f"image {image.descriptor}: {image.path} is missing")
    volume_text = ";".join(request.volumes)
    specs = parse_volume_specs(volume_text, source="-v")
    for spec in specs:
        check_user_volume(spec, "-v")
    check_site(config, modules)
    gpus = plan_gpus(config, request.gpus, "--gpus")
    etc_files = plan_etc(config, identity)
    sshd_files: list[tuple[str, bytes, int, int]] = []
    if request.ssh_pubkey is not None:
        sshd_files = sshd.plan_files(config, identity, sshd.check_pubkey(request.ssh_pubkey))
    names = tuple(module.name for module in modules)
    signature = container_signature(image.id, user.name, specs, names)
    meta = image.meta
    record = EnterRecord(
        config_path=config.source,
        config_stamp=config_stamp,
        udi_mount=config.udi_mount,
        signature=signature,
        uid=user.uid,
        user=user.name,
        image_id=image.id,
        volume_text=volume_text,
        modules=names,
        default_modules=tuple(config.default_modules),
        image_env=tuple(meta.env) if meta else (),
        entry=tuple(meta.entrypoint) if meta and meta.entrypoint is not None else None,
        cmd=tuple(meta.cmd) if meta and meta.cmd is not None else None,
        workdir=meta.workdir if meta else None,
        # The GPUs' variables too: the fast enter path (enter.py) reads only the record.
        site_env=site_env_steps(modules, config) + (gpus.env_steps if gpus else ()),
        userhooks=tuple((m.key("userhook"), m.userhook) for m in modules if m.userhook),
    )
    steps.done("planned")
    entries = read_mountinfo()
    roots = container_roots(config)
    busy = container_mounts(entries, roots)
    if busy:
        raise SetupError(
            f"{config.udi_mount} already holds a container ({len(busy)} mounts)",
            hint="run unsetupRoot first",
        )
    used: list[loopdev.LoopDevice] = []

    def mount_image(target: str) -> None:
        used.append(loopdev.mount_image(config, image.path, image.format, target))

    plan = ContainerPlan(
        config,
        BuildMode.ROOT,
        image_path=image.path,
        image_mounter=None if image.is_directory else mount_image,
        modules=modules,
        user_volumes=specs,
        etc_files=etc_files,
        signature=signature,
        steps=steps,
        credentials=(user.uid, user.gid, identity.all_gids),
        enter_record=record.to_bytes(),
        hostsfile=hostsfile,
        gpu=gpus,
        sshd_files=sshd_files,
    )
    try:
        _make_private(roots, entries)
        build_container(plan)
        # Every rank of the job on this node joins it (jobns.py): MPI's single-copy paths.
        try:
            pin_job_namespace(config.udi_mount, user.uid, user.gid)
        except OSError as error:
            raise SetupError(
                f"cannot make the job's user namespace for {user.name}: {error}",
                hint="check that user namespaces are enabled (user.max_user_namespaces)",
            ) from error
        steps.done("user namespace pinned")
        if sshd_files:
            sshd.start(config, identity)
            steps.done("sshd started")
    except BaseException as error:
        try:
            teardown(config)
        except ShifterError as cleanup:
            raise SetupError(f"{error}; then the cleanup failed too: {cleanup}") from error
        raise
    steps.done("built")
    return SetupResult(signature, image.path, used[0].path if used else None)
