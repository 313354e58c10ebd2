"""`shifter`'s launch, start to exec: decide everything, build the container in private
namespaces, enter it, drop privileges, exec the command in place.

Process structure: there is none to speak of. The launcher *becomes* the command (exec
in place): signals sent to `shifter`'s PID reach the command, and its exit status is
shifter's. The only other process is squashfuse, detached from the launcher (see
image/fuse.py), which exits by itself when the container's last process does.

Order:

1. everything that can fail without a namespace: image choice and lookup, `.meta`, the
   access check, modules, volumes (syntax and policy), argv, workdir, environment (the
   env-file is read on the host), /etc content, hooks;
2. when setupRoot already built a container for exactly this request (same signature),
   enter it (job/enter.py) and go to 4; otherwise:
3. a user namespace mapping only the caller's uid and gid (the one the user's other private
   containers on the node share, identity/sharedns.py, else a new one); /dev/fuse and the
   squashfuse server (image/fuse.py); a mount namespace, `/` made a recursive slave (host
   mounts still propagate in, nothing leaks out);
   the container root at udiMount (rootfs/build.py); chroot into it;
4. privileges dropped and checked (identity/privileges.py), workdir, module userhooks, exec
   (start.py).

A failure at any step ends the process; its namespaces and mounts die with it, so there
is nothing to undo.

After the chroot, Python cannot import anything more (the host's library is out of
reach): whatever the last steps need is imported before it.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError
from shifter.runtime import start
from shifter.runtime.config.load import ModuleConfig, UdiRootConfig
from shifter.runtime.identity import privileges
from shifter.runtime.identity.user import current_identity
from shifter.runtime.identity.userdir import open_user_dir
from shifter.runtime.image.source import Image, check_acl, check_readable, find_image
from shifter.runtime.job.enter import enter_root, open_matching
from shifter.runtime.request.command import container_argv, plan_workdir
from shifter.runtime.request.selection import choose_image, choose_modules, choose_volumes
from shifter.runtime.rootfs.build import BuildMode, ContainerPlan, build_container, check_site
from shifter.runtime.rootfs.etc import plan_etc
from shifter.runtime.rootfs.signature import container_signature
from shifter.runtime.site import gpu
from shifter.runtime.site.environment import (
    apply_site_env,
    build_environment,
    host_environment,
    parse_env_option,
    read_env_file,
)
from shifter.runtime.site.modules import select_modules
from shifter.runtime.trace import Steps
from shifter.runtime.volumes.policy import check_user_volume
from shifter.runtime.volumes.spec import VolumeSpec, parse_volume_specs

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

UNPRIVILEGED_FORMATS = ("squashfs", "VFS", "local")
GPU_VARIABLE = "CUDA_VISIBLE_DEVICES"  # selects among the site's GPUs (gpu.py)


class LaunchRequest:
    """What the command line asked for (the environment is read separately). `entrypoint`
    and `workdir`: None when the option is absent, "" when given without a value.
    (Plain class: launch path.)"""

    __slots__ = (
        "clear_env",
        "command",
        "entrypoint",
        "env",
        "env_file",
        "image",
        "modules",
        "verbose",
        "volumes",
        "workdir",
    )

    def __init__(
        self,
        command: Sequence[str] = (),
        *,
        image: str | None = None,
        volumes: Sequence[str] = (),
        modules: str | None = None,
        entrypoint: str | None = None,
        workdir: str | None = None,
        env: Sequence[str] = (),
        env_file: str | None = None,
        clear_env: bool = False,
        verbose: bool = False,
    ) -> None:
        self.command = tuple(command)
        self.image = image
        self.volumes = tuple(volumes)
        self.modules = modules
        self.entrypoint = entrypoint
        self.workdir = workdir
        self.env = tuple(env)
        self.env_file = env_file
        self.clear_env = clear_env
        self.verbose = verbose


def _user_volumes(request: LaunchRequest, environ: Mapping[str, str]) -> tuple[VolumeSpec, ...]:
    text, origin = choose_volumes(request.volumes, environ)
    specs = parse_volume_specs(text, source=origin or None)
    for spec in specs:
        check_user_volume(spec, origin)
    return specs


def command_paths(program: str, search_path: str | None) -> tuple[str, ...]:
    """Where `program` may be in the container (as start.py's exec will search), for the
    read-ahead of the image server (image/fuse.py); relative names cannot be placed yet."""
    if "/" in program:
        return (program,) if program.startswith("/") else ()
    directories = (search_path or os.defpath).split(":")
    return tuple(f"{d.rstrip('/')}/{program}" for d in directories if d.startswith("/"))


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None  # deleted under us: the workdir falls back


def launch(
    request: LaunchRequest,
    config: UdiRootConfig,
    environ: Mapping[str, str],
) -> int:
    """Run `request` in a container. Returns only when the command cannot be exec'd
    (with the shell's status for that); raises `ShifterError` for everything else."""
    steps = Steps(request.verbose)
    choice = choose_image(request.image, environ, config.default_image_type)
    identity = current_identity(config)
    user = identity.user
    image = find_image(choice.descriptor, config, environ=environ)
    check_acl(image, user.uid, identity.all_gids)
    modules_text, modules_origin = choose_modules(request.modules, environ)
    modules = select_modules(config, modules_text, modules_origin)
    user_volumes = _user_volumes(request, environ)
    check_site(config, modules)
    meta = image.meta
    argv = container_argv(
        request.command,
        request.entrypoint,
        meta.entrypoint if meta else None,
        meta.cmd if meta else None,
    )
    workdir = plan_workdir(request.workdir, _cwd(), meta.workdir if meta else None)
    env_file = read_env_file(request.env_file) if request.env_file else ()
    env = build_environment(
        {} if request.clear_env else host_environment(environ),
        request=choice.request,
        image_id=image.id,
        image_env=meta.env if meta else (),
        env_file=env_file,
        env_options=[parse_env_option(text) for text in request.env],
        modules=modules,
        config=config,
    )
    signature = container_signature(image.id, user.name, user_volumes, [m.name for m in modules])
    groups = privileges.expected_groups(os.getgroups(), (user.gid,), privileges.overflow_gid())
    userhooks = [(m.key("userhook"), m.userhook) for m in modules if m.userhook]
    start.prepare(userhooks)
    # The user's own directory on the node: the shared user namespace's record
    # (identity/sharedns.py) and the userhooks' remembered successes (site/hooks.py).
    user_dir = open_user_dir(user.uid)
    verdicts = None
    if userhooks:
        from shifter.runtime.site.hooks import HookVerdicts

        verdicts = HookVerdicts.for_container(user_dir, image.id, signature)
    existing = open_matching(config.udi_mount, signature)
    if existing is not None:
        # setupRoot chose the job's GPUs (its --gpus): the container is used as it is.
        apply_site_env(env, gpu.env_steps_of_container(config, config.udi_mount))
        steps.done("planned; entering the setupRoot container")
        enter_root(existing)
    else:
        gpus = gpu.plan_gpus(config, environ.get(GPU_VARIABLE), GPU_VARIABLE)
        if gpus is not None:
            apply_site_env(env, gpus.env_steps)
        if image.format not in UNPRIVILEGED_FORMATS:
            raise ShifterError(
                f"image {image.descriptor} is {image.format}; shifter without root mounts "
                "only squashfs images",
                hint="the batch system's setupRoot (privileged) can mount it",
            )
        check_readable(image)
        etc_files = plan_etc(config, identity)
        steps.done("planned")
        _enter_private_container(
            config,
            image,
            modules,
            user_volumes,
            etc_files,
            signature,
            request,
            steps,
            gpus,
            user_dir,
            command_paths(argv[0], env.get("PATH")),
        )
    steps.done("in the container")
    return start.run_in_container(
        uid=user.uid,
        gid=user.gid,
        groups=groups,
        workdir=workdir,
        userhooks=userhooks,
        argv=argv,
        env=env,
        hook_verdicts=verdicts,
    )


def _enter_private_container(
    config: UdiRootConfig,
    image: Image,
    modules: Sequence[ModuleConfig],
    user_volumes: Sequence[VolumeSpec],
    etc_files: dict[str, bytes],
    signature: str,
    request: LaunchRequest,
    steps: Steps,
    gpus: gpu.GpuPlan | None,
    user_dir: int | None,
    prefetch: tuple[str, ...] = (),
) -> None:
    from shifter.runtime.identity.sharedns import enter_shared
    from shifter.runtime.image.fuse import SquashfuseServer
    from shifter.sys.mount import MountFlag, mount
    from shifter.sys.namespace import Namespace, unshare
    from shifter.sys.root import chroot

    uid, gid = os.getuid(), os.getgid()
    # The user namespace of the user's other private containers on this node, if one
    # runs: MPI ranks need one to reach into one another (identity/sharedns.py).
    enter_shared(uid, gid, user_dir)
    server = (
        None
        if image.is_directory
        else SquashfuseServer(image.path, verbose=request.verbose, prefetch=prefetch)
    )
    try:
        unshare(Namespace.NEWNS)
        mount(None, "/", None, MountFlag.REC | MountFlag.SLAVE)
        steps.done("namespaces")
        plan = ContainerPlan(
            config,
            BuildMode.USER_NAMESPACE,
            image_path=image.path,
            image_mounter=None if server is None else (lambda t: server.mount(t, uid, gid)),
            wait_for_image=None if server is None else server.wait_ready,
            modules=modules,
            user_volumes=user_volumes,
            etc_files=etc_files,
            signature=signature,
            steps=steps,
            gpu=gpus,
        )
        build_container(plan)
    finally:
        if server is not None:
            server.close()
            server.reap()
            server.finish_prefetch()
    steps.done("container built")
    chroot(config.udi_mount)
