"""`shifter`'s launch, start to exec: decide, build the container in private namespaces,
enter it, drop privileges, exec the command in place.

Process structure: there is none to speak of. The launcher *becomes* the command (exec
in place): signals sent to `shifter`'s PID reach the command, and its exit status is
shifter's. The only other process is squashfuse, detached from the launcher (see
image/fuse.py), which exits by itself when the container's last process does.

Order:

1. on the host, what the image mount needs: image choice and lookup, `.meta`, the access
   check, and whether udiMount holds a setupRoot container at all (its enter record);
2. when it does (`planned_first`), everything is decided first as it always was: modules,
   volumes (syntax and policy), argv, workdir, environment (the env-file read on the
   host), site checks, the signature; when the signature is that container's, enter it
   (job/enter.py) and go to 5; otherwise GPUs, format, /etc, then 3 and 4 with nothing
   left to plan;
3. a cold launch (`mounted_first`) first checks on the host what only the host can check
   and the command: format and readability of the image, the modules, the site hooks, the
   GPUs and etcPath (root's files show as nobody's in the user namespace), argv and
   workdir. Then a user namespace mapping only the caller's uid and gid (the one the
   user's other private containers on the node share, identity/sharedns.py, else a new
   one); /dev/fuse and the squashfuse server (image/fuse.py); a mount namespace, `/` made a
   recursive slave (host mounts still propagate in, nothing leaks out); the image mounted
   at loopMount: squashfuse starts and reads the command ahead (where the container's
   PATH would find it: the caller's, the image's ENV, `--env`; a guess only steers the
   read-ahead);
4. meanwhile the rest is imported and planned: volumes (syntax and policy), the site's
   volumes, /etc without etcPath, the environment (the env-file read as the user), the
   signature; then the container root at udiMount (rootfs/build.py), the read-ahead
   joined, chroot into it;
5. privileges dropped and checked (identity/privileges.py), workdir, module userhooks,
   exec (start.py).

A failure at any step ends the process; its namespaces and mounts die with it, so there
is nothing to undo: a refusal in step 4 has the same message and status as before step 3.

After the chroot, Python cannot import anything more (the host's library is out of
reach): whatever the last steps need is imported before it.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError
from shifter.runtime.config.load import ModuleConfig, UdiRootConfig
from shifter.runtime.identity.user import current_identity
from shifter.runtime.identity.userdir import open_user_dir
from shifter.runtime.image.source import Image, check_acl, check_readable, find_image
from shifter.runtime.job.enter import open_root
from shifter.runtime.request.command import (
    LaunchRequest,
    command_paths,
    container_argv,
    plan_workdir,
)
from shifter.runtime.request.selection import choose_image, choose_modules, choose_volumes
from shifter.runtime.rootfs.signature import read_record
from shifter.runtime.site.modules import select_modules
from shifter.runtime.trace import Steps

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from shifter.runtime.identity.user import Identity
    from shifter.runtime.image.fuse import Prefetch, SquashfuseServer
    from shifter.runtime.image.helper import HelperMount
    from shifter.runtime.request.command import WorkdirPlan
    from shifter.runtime.request.selection import ImageChoice
    from shifter.runtime.site.gpu import GpuPlan
    from shifter.runtime.volumes.spec import VolumeSpec

UNPRIVILEGED_FORMATS = ("squashfs", "VFS", "local")
GPU_VARIABLE = "CUDA_VISIBLE_DEVICES"  # selects among the site's GPUs (gpu.py)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None  # deleted under us: the workdir falls back


def _holds_setup_root(udi_mount: str) -> bool:
    """Whether udiMount holds a container setupRoot built (any: the signature is compared
    later). Only setupRoot writes an enter record; a private container is never visible
    here (it is built in the launcher's own mount namespace)."""
    root_fd = open_root(udi_mount)
    if root_fd is None:
        return False
    try:
        return read_record(root_fd) is not None
    finally:
        os.close(root_fd)


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
    image = find_image(choice.descriptor, config, environ=environ)
    check_acl(image, identity.user.uid, identity.all_gids)
    launcher = _Launch(request, config, environ, choice, identity, image, steps)
    if _holds_setup_root(config.udi_mount):
        return launcher.planned_first()
    return launcher.mounted_first()


class _Launch:
    """One launch's decisions, in the order of either way (see the module's docstring)."""

    __slots__ = (
        "argv",
        "choice",
        "config",
        "environ",
        "groups",
        "identity",
        "image",
        "image_mounted",
        "modules",
        "request",
        "steps",
        "user_dir",
        "workdir",
    )

    def __init__(
        self,
        request: LaunchRequest,
        config: UdiRootConfig,
        environ: Mapping[str, str],
        choice: ImageChoice,
        identity: Identity,
        image: Image,
        steps: Steps,
    ) -> None:
        self.request = request
        self.config = config
        self.environ = environ
        self.choice = choice
        self.identity = identity
        self.image = image
        self.image_mounted = False  # at loopMount, by squashfuse or the mount helper
        self.steps = steps
        self.modules: tuple[ModuleConfig, ...] = ()
        self.argv: tuple[str, ...] = ()
        self.workdir: WorkdirPlan | None = None
        # As the host shows them: inside the user namespace unmapped groups are overflowgid.
        self.groups = os.getgroups()
        self.user_dir: int | None = None

    def choose_modules(self) -> None:
        text, origin = choose_modules(self.request.modules, self.environ)
        self.modules = tuple(select_modules(self.config, text, origin))

    def choose_command(self) -> None:
        meta, request = self.image.meta, self.request
        self.argv = container_argv(
            request.command,
            request.entrypoint,
            meta.entrypoint if meta else None,
            meta.cmd if meta else None,
        )
        self.workdir = plan_workdir(self.request.workdir, _cwd(), meta.workdir if meta else None)

    def user_volumes(self) -> tuple[VolumeSpec, ...]:
        from shifter.runtime.volumes.policy import check_user_volume
        from shifter.runtime.volumes.spec import parse_volume_specs

        text, origin = choose_volumes(self.request.volumes, self.environ)
        specs = parse_volume_specs(text, source=origin or None)
        for spec in specs:
            check_user_volume(spec, origin)
        return specs

    def environment(self) -> dict[str, str]:
        from shifter.runtime.site.environment import (
            build_environment,
            host_environment,
            parse_env_option,
            read_env_file,
        )

        request, meta = self.request, self.image.meta
        env_file = read_env_file(request.env_file) if request.env_file else ()
        return build_environment(
            {} if request.clear_env else host_environment(self.environ),
            request=self.choice.request,
            image_id=self.image.id,
            image_env=meta.env if meta else (),
            env_file=env_file,
            env_options=[parse_env_option(text) for text in request.env],
            modules=self.modules,
            config=self.config,
        )

    def early_path(self) -> str | None:
        """The container's PATH as far as it is known before the plan (the caller's, the
        image's ENV, `--env`; not the env-file's or the site's): only where the command is
        read ahead depends on it, never what runs."""
        meta, request = self.image.meta, self.request
        path = None if request.clear_env else self.environ.get("PATH")
        for item in (*(meta.env if meta else ()), *request.env):
            if item.startswith("PATH="):
                path = item[len("PATH=") :]
        return path

    def check_format(self) -> None:
        image = self.image
        if image.format not in UNPRIVILEGED_FORMATS:
            raise ShifterError(
                f"image {image.descriptor} is {image.format}; shifter without root mounts "
                "only squashfs images",
                hint="the batch system's setupRoot (privileged) can mount it",
            )
        check_readable(image)

    def planned_first(self) -> int:
        """A setupRoot container is at udiMount: decide everything, then enter it when it
        is this request's, else build a private one (the order before cold launches were
        reordered, kept for entering)."""
        from shifter.runtime.job.enter import enter_root, open_matching
        from shifter.runtime.rootfs.build import check_site
        from shifter.runtime.site import gpu
        from shifter.runtime.site.environment import apply_site_env

        config = self.config
        self.choose_modules()
        user_volumes = self.user_volumes()
        check_site(config, self.modules)
        self.choose_command()
        env = self.environment()
        signature = self.signature(user_volumes)
        finish = self.prepare_finish(signature)
        existing = open_matching(config.udi_mount, signature)
        if existing is not None:
            # setupRoot chose the job's GPUs (its --gpus): the container is used as it is.
            apply_site_env(env, gpu.env_steps_of_container(config, config.udi_mount))
            self.steps.done("planned; entering the setupRoot container")
            enter_root(existing)
        else:
            gpus = gpu.plan_gpus(config, self.environ.get(GPU_VARIABLE), GPU_VARIABLE)
            if gpus is not None:
                apply_site_env(env, gpus.env_steps)
            self.check_format()
            etc_files = self.plan_etc()
            self.steps.done("planned")
            server = self.enter_namespaces(command_paths(self.argv[0], env.get("PATH")))
            self.build(server, user_volumes, etc_files, signature, gpus)
        return finish(env)

    def mounted_first(self) -> int:
        """No setupRoot container: start the image server as early as the host checks
        allow, and plan the rest while it reads the command ahead."""
        from shifter.runtime.site.hooks import check_site_hooks

        config = self.config
        self.check_format()
        self.choose_modules()
        # What checks that root owns a file runs on the host: in the user namespace root's
        # files show as nobody's. The hooks; the GPUs where the site has them (the CDI
        # spec); /etc when etcPath is set (without it, /etc is the host's files and NSS,
        # read as well in the namespace, after the mount).
        check_site_hooks(config, self.modules)
        gpus = None
        if config.gpus_configured():  # without importing gpu.py when there are none
            from shifter.runtime.site import gpu

            gpus = gpu.plan_gpus(config, self.environ.get(GPU_VARIABLE), GPU_VARIABLE)
        etc_files = self.plan_etc() if config.etc_path else None
        self.choose_command()
        self.steps.done("checked on the host")
        server = self.enter_namespaces(command_paths(self.argv[0], self.early_path()))
        try:
            from shifter.runtime.rootfs.build import check_site_volumes
            from shifter.runtime.site.environment import apply_site_env

            user_volumes = self.user_volumes()
            check_site_volumes(config, self.modules)
            if etc_files is None:
                etc_files = self.plan_etc()
            env = self.environment()
            if gpus is not None:
                apply_site_env(env, gpus.env_steps)
            signature = self.signature(user_volumes)
            finish = self.prepare_finish(signature)
            self.steps.done("planned")
        except BaseException:
            if server is not None:
                server.abandon()
            raise
        self.build(server, user_volumes, etc_files, signature, gpus)
        return finish(env)

    def signature(self, user_volumes: Sequence[VolumeSpec]) -> str:
        from shifter.runtime.rootfs.signature import container_signature

        names = [m.name for m in self.modules]
        return container_signature(self.image.id, self.identity.user.name, user_volumes, names)

    def own_dir(self) -> int | None:
        """The user's own directory on the node (userdir.py), opened once."""
        if self.user_dir is None:
            self.user_dir = open_user_dir(self.identity.user.uid)
        return self.user_dir

    def plan_etc(self) -> dict[str, bytes]:
        from shifter.runtime.rootfs.etc import plan_etc

        return plan_etc(self.config, self.identity)

    def prepare_finish(self, signature: str) -> Callable[[dict[str, str]], int]:
        """Import and decide what the last steps need; returns them, to run in the
        container with the final environment."""
        from shifter.runtime import start
        from shifter.runtime.identity import privileges

        user = self.identity.user
        groups = privileges.expected_groups(self.groups, (user.gid,), privileges.overflow_gid())
        workdir = self.workdir
        userhooks = [(m.key("userhook"), m.userhook) for m in self.modules if m.userhook]
        start.prepare(userhooks)
        verdicts = None
        if userhooks:  # their remembered successes are in the user's directory (hooks.py)
            from shifter.runtime.site.hooks import HookVerdicts

            verdicts = HookVerdicts.for_container(self.own_dir(), self.image.id, signature)
        argv = self.argv

        def finish(env: dict[str, str]) -> int:
            self.steps.done("in the container")
            return start.run_in_container(
                uid=user.uid,
                gid=user.gid,
                groups=groups,
                workdir=workdir,  # type: ignore[arg-type]  (chosen with the command)
                userhooks=userhooks,
                argv=argv,
                env=env,
                hook_verdicts=verdicts,
            )

        return finish

    def enter_namespaces(
        self, prefetch: tuple[str, ...]
    ) -> SquashfuseServer | _HelperImage | None:
        """The user namespace, the image server, the mount namespace, the image mounted
        at loopMount: the kernel's mount from the node's mount helper (image/helper.py)
        when the site runs one, else squashfuse's, which starts reading `prefetch` ahead."""
        helper = None
        if not self.image.is_directory:
            self.config.check_directory("loopMount", self.config.loop_mount)
            # Asked from the host's user namespace, where the helper's uid reads as 0.
            helper = self.helper_mount()
        try:
            return self._enter_namespaces(helper, prefetch)
        finally:
            if helper is not None:
                helper.release()

    def _enter_namespaces(
        self, helper: HelperMount | None, prefetch: tuple[str, ...]
    ) -> SquashfuseServer | _HelperImage | None:
        from shifter.runtime.identity.sharedns import enter_shared
        from shifter.sys.mount import MountFlag, mount
        from shifter.sys.namespace import Namespace, unshare

        config, image = self.config, self.image
        uid, gid = os.getuid(), os.getgid()
        # The user namespace of the user's other private containers on this node, if one
        # runs: MPI ranks need one to reach into one another (identity/sharedns.py); its
        # record is in the user's directory.
        enter_shared(uid, gid, self.own_dir())
        server = None
        if helper is None and not image.is_directory:
            from shifter.runtime.image.fuse import SquashfuseServer

            server = SquashfuseServer(image.path, verbose=self.request.verbose, prefetch=prefetch)
        try:
            # The helper's mount is in the copy this makes, its flags locked (helper.py).
            unshare(Namespace.NEWNS)
            mount(None, "/", None, MountFlag.REC | MountFlag.SLAVE)
            self.steps.done("namespaces")
            if helper is not None:
                from shifter.runtime.image.fuse import Prefetch

                mount(helper.path, config.loop_mount, None, MountFlag.BIND)
                self.image_mounted = True
                self.steps.done("image mounted (the mount helper's kernel mount)")
                # The kernel decompresses the command on the read-ahead's thread meanwhile.
                return _HelperImage(Prefetch(config.loop_mount, prefetch) if prefetch else None)
            if server is not None:
                server.mount(config.loop_mount, uid, gid)
                self.image_mounted = True
                self.steps.done("image mounted")
        except BaseException:
            if server is not None:
                server.abandon()
            raise
        return server

    def helper_mount(self) -> HelperMount | None:
        """The image mounted by the node's mount helper, or None (no helper configured, or
        it did not give one: squashfuse then)."""
        socket_path = self.config.mount_helper_socket
        if not socket_path or self.image.format != "squashfs":
            return None
        from shifter.runtime.image.helper import request_mount

        found = request_mount(socket_path, self.image.id)
        if isinstance(found, str):
            self.steps.done(f"{found}; squashfuse instead")
            return None
        return found

    def build(
        self,
        server: SquashfuseServer | _HelperImage | None,
        user_volumes: Sequence[VolumeSpec],
        etc_files: dict[str, bytes],
        signature: str,
        gpus: GpuPlan | None,
    ) -> None:
        """The container root at udiMount (the image already mounted), then the chroot."""
        from shifter.runtime.rootfs.build import BuildMode, ContainerPlan, build_container
        from shifter.sys.root import chroot

        config, image = self.config, self.image
        try:
            plan = ContainerPlan(
                config,
                BuildMode.USER_NAMESPACE,
                image_path=image.path,
                image_mounted=self.image_mounted,
                wait_for_image=None if server is None else server.wait_ready,
                modules=self.modules,
                user_volumes=user_volumes,
                etc_files=etc_files,
                signature=signature,
                steps=self.steps,
                gpu=gpus,
            )
            build_container(plan)
        finally:
            if server is not None:
                server.abandon()
        self.steps.done("container built")
        chroot(config.udi_mount)


class _HelperImage:
    """The mount helper's image at loopMount: nothing to wait for but the read-ahead of
    the command (joined before the privilege drop, as squashfuse's)."""

    __slots__ = ("prefetch",)

    def __init__(self, prefetch: Prefetch | None) -> None:
        self.prefetch = prefetch

    def wait_ready(self) -> None:
        """The kernel's mount answers at once."""

    def abandon(self) -> None:
        if self.prefetch is not None:
            self.prefetch.wait()
            self.prefetch = None
