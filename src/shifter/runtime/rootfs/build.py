"""Building the container's root filesystem at udiMount (the original's `mountImageVFS`).

The same builder serves both paths; `BuildMode` says which:

- `USER_NAMESPACE`: run by the user's `shifter` inside its own new user and mount
  namespaces. The image is mounted by squashfuse; /proc, /sys, /dev, /tmp and /var/tmp
  are recursive binds of the host's (a fresh proc needs a PID namespace; and host mounts
  with submounts can only be bound together with them), and so are site filesystems,
  site directories and user volumes; perNodeCache is refused.
- `ROOT`: run as root (setupRoot). The image is loop-mounted; /proc is a fresh proc
  mount, /sys a plain bind; binds are recursive only for /dev and `rec` site filesystems.

A recursive bind's restrictions (nosuid, nodev, ro) are given to every mount it brings
in (binds.py), not only to its top.

How the image is mounted is the caller's `ImageMounter`; everything else is here, in the
original's order:

1. the image at loopMount (its server starts while the rest is built), unless the caller
   mounted it already (a cold launch, to plan while squashfuse reads ahead);
2. a `rootfsType` filesystem at udiMount (nosuid, nodev, private), the skeleton
   directories, and `var/shifterConfig.json` (and on the privileged path the enter record)
   created empty, so that nothing from the image can take those names;
3. sitePreMountHook, siteFs, sitePostMountHook, each active module's siteFs;
4. /etc (etc.py), /opt/udiImage from optUdiImage and the modules' copyPath (read-only),
   the modules' roothooks;
5. /proc, /sys, /dev, /tmp, /var/tmp;
6. the image's content (imagebind.py): `/`, `/var`, `/opt`, then `/etc`;
7. the user's volumes (volumes.py: resolved with the path guard, race-free binds; on the
   privileged path the source is resolved with the user's credentials, and perNodeCache
   volumes are made: pernodecache.py);
8. the signature (and the enter record) written: only a complete container can match;
9. the root remounted read-only unless mountUdiRootWritable=1.
"""

from __future__ import annotations

import os

from shifter.errors import ShifterError
from shifter.runtime.config.load import ModuleConfig, UdiRootConfig
from shifter.runtime.identity.jobns import USERNS_FILE
from shifter.runtime.identity.privileges import ActingAs
from shifter.runtime.rootfs.binds import bind, bind_staged, make_mount_point, restrictions
from shifter.runtime.rootfs.etc import write_etc
from shifter.runtime.rootfs.hostsfile import HOSTSFILE
from shifter.runtime.rootfs.imagebind import ImageTree
from shifter.runtime.rootfs.signature import ENTER_FILE, SIGNATURE_FILE
from shifter.runtime.rootfs.signature import container_signature as container_signature  # (moved)
from shifter.runtime.rootfs.udiimage import installed_udi_image
from shifter.runtime.site.gpu import GpuPlan
from shifter.runtime.site.hooks import check_site_hooks, run_hook
from shifter.runtime.trace import Steps
from shifter.runtime.volumes import policy as volumes
from shifter.runtime.volumes.pathguard import Resolved, fd_path
from shifter.runtime.volumes.spec import VolumeSpec
from shifter.sys.mount import MountFlag, kept_flags, mount

TYPE_CHECKING = False  # the launch path: `collections` costs it ~1 ms
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

SKELETON = (
    ("etc", 0o755),
    ("etc/udiImage", 0o755),
    ("opt", 0o755),
    ("opt/udiImage", 0o755),
    ("opt/udiImage/modules", 0o755),
    ("var", 0o755),
    ("var/spool", 0o755),
    ("var/run", 0o755),
    ("var/tmp", 0o755),
    ("var/empty", 0o700),
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
    ("tmp", 0o755),
)
STAGING = ".shifter-staging"  # where volumes are configured before being moved in place
ROOT_SOURCE = "shifter"  # the root filesystem's name in the mount table
ROOT_FLAGS = MountFlag.NOSUID | MountFlag.NODEV
PROPAGATION = {"private": MountFlag.PRIVATE, "slave": MountFlag.SLAVE}


class BuildMode:
    """Which path builds the tree (compare with `is`). Not an `enum`: importing it costs
    the cold launch ~1.5 ms."""

    USER_NAMESPACE = "user namespace"
    ROOT = "root"


if TYPE_CHECKING:
    ImageMounter = Callable[[str], None]  # mounts the image read-only at the given directory


class ContainerPlan:
    """Everything the build needs, decided before any mount. (Plain class: launch path.)

    `credentials` (privileged path): the user's uid, gid and groups, with which volume
    sources are resolved and to whom perNodeCache volumes belong. `enter_record`
    (privileged path): the bytes of the enter record (signature.py)."""

    __slots__ = (
        "config",
        "credentials",
        "enter_record",
        "etc_files",
        "gpu",
        "hostsfile",
        "image_mounted",
        "image_mounter",
        "image_path",
        "mode",
        "modules",
        "signature",
        "sshd_files",
        "steps",
        "user_volumes",
        "wait_for_image",
    )

    def __init__(
        self,
        config: UdiRootConfig,
        mode: str,
        *,
        image_path: str,
        image_mounter: ImageMounter | None = None,
        image_mounted: bool = False,
        modules: Sequence[ModuleConfig],
        user_volumes: Sequence[VolumeSpec],
        etc_files: dict[str, bytes],
        signature: str,
        wait_for_image: Callable[[], None] | None = None,
        steps: Steps | None = None,
        credentials: tuple[int, int, tuple[int, ...]] | None = None,
        enter_record: bytes | None = None,
        hostsfile: bytes | None = None,
        gpu: GpuPlan | None = None,
        sshd_files: Sequence[tuple[str, bytes, int, int]] = (),
    ) -> None:
        self.config = config
        self.mode = mode
        self.image_path = image_path  # the image file, or the directory of a directory image
        self.image_mounter = image_mounter  # None: a directory image, or `image_mounted`
        # The caller mounted the image file at loopMount before planning (launch.py: its
        # server reads the command ahead while the launcher plans).
        self.image_mounted = image_mounted
        self.wait_for_image = wait_for_image  # blocks until the mounted image answers
        self.modules = tuple(modules)
        self.user_volumes = tuple(user_volumes)
        self.etc_files = etc_files
        self.signature = signature
        self.steps = steps or Steps(False)
        self.credentials = credentials
        self.enter_record = enter_record
        self.hostsfile = hostsfile  # setupRoot -N: /var/hostsfile's content
        self.gpu = gpu  # the GPUs' nodes and driver files (gpu.py), None without
        # setupRoot -s: the job's sshd's files in /etc/ssh (sshd.py): path, bytes, mode, uid
        self.sshd_files = tuple(sshd_files)


def check_site(config: UdiRootConfig, modules: Sequence[ModuleConfig]) -> None:
    """The site's volumes and hooks, checked while planning (before anything is mounted)."""
    check_site_volumes(config, modules)
    check_site_hooks(config, modules)


def check_site_volumes(config: UdiRootConfig, modules: Sequence[ModuleConfig]) -> None:
    """siteFs and the active modules' siteFs (a cold launch checks them after its mount)."""
    for site in (*config.site_fs, *(s for m in modules for s in m.site_fs)):
        volumes.check_site_volume(site.spec, str(site.origin))


class _Builder:
    def __init__(self, plan: ContainerPlan) -> None:
        self.plan = plan
        self.config = plan.config
        self.root = plan.config.udi_mount
        self.user_ns = plan.mode is BuildMode.USER_NAMESPACE
        self.staging = os.path.join(self.root, STAGING)
        # The image is a file mounted at loopMount (by the mounter, or already by the
        # caller), else a directory used in place.
        self.image_file = plan.image_mounter is not None or plan.image_mounted

    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative)

    def propagation(self, spec: VolumeSpec) -> MountFlag:
        return PROPAGATION[spec.propagation or self.config.mount_propagation_style]

    def build(self) -> None:
        umask = os.umask(0o022)  # the modes below are meant as written
        try:
            self._build()
        finally:
            os.umask(umask)

    def _build(self) -> None:
        config = self.config
        config.check_directory("udiMount", config.udi_mount)
        image_root = self.plan.image_path
        if self.image_file:
            if self.plan.image_mounter is not None:
                config.check_directory("loopMount", config.loop_mount)
                self.plan.image_mounter(config.loop_mount)
                self.plan.steps.done("image mounted")
            image_root = config.loop_mount
        steps = self.plan.steps
        mount(ROOT_SOURCE, self.root, config.rootfs_type, ROOT_FLAGS, "mode=755")
        mount(None, self.root, None, MountFlag.PRIVATE | MountFlag.REC)
        for relative, mode in SKELETON:
            os.mkdir(self.path(relative), mode)
        os.mkdir(self.staging, 0o700)
        self.reserve(SIGNATURE_FILE)
        if self.plan.enter_record is not None:
            self.reserve(ENTER_FILE)
            self.reserve(USERNS_FILE)  # setupRoot pins the job's user namespace on it
        self.site_layer()
        steps.done("root, site filesystems, /etc")
        self.kernel_interfaces()
        steps.done("/proc, /sys, /dev, /tmp")
        if self.plan.wait_for_image is not None:
            self.plan.wait_for_image()
            steps.done("image server ready")
        self.image_content(image_root)
        steps.done("image content")
        self.user_volumes()
        if self.plan.hostsfile is not None:
            self.reserve(HOSTSFILE)
            self.fill(HOSTSFILE, self.plan.hostsfile)
        for relative, content, mode, uid in self.plan.sshd_files:
            self.reserve(relative)
            self.fill(relative, content)
            os.chown(self.path(relative), uid, -1, follow_symlinks=False)
            os.chmod(self.path(relative), mode, follow_symlinks=False)
        os.rmdir(self.staging)
        self.fill(SIGNATURE_FILE, (self.plan.signature + "\n").encode())
        if self.plan.enter_record is not None:
            self.fill(ENTER_FILE, self.plan.enter_record)
        if not config.mount_udi_root_writable:
            mount(None, self.root, None, MountFlag.REMOUNT | ROOT_FLAGS | MountFlag.RDONLY)
        steps.done("volumes")

    def reserve(self, relative: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        os.close(os.open(self.path(relative), flags, 0o644))

    def fill(self, relative: str, content: bytes) -> None:
        fd = os.open(self.path(relative), os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.write(fd, content)
        finally:
            os.close(fd)

    def site_layer(self) -> None:
        config = self.config
        if config.site_pre_mount_hook:
            run_hook(config.site_pre_mount_hook, "sitePreMountHook", self.root)
        for site in config.site_fs:
            self.site_volume(site.spec, str(site.origin))
        if config.site_post_mount_hook:
            run_hook(config.site_post_mount_hook, "sitePostMountHook", self.root)
        for module in self.plan.modules:
            for site in module.site_fs:
                self.site_volume(site.spec, str(site.origin))
        write_etc(self.path("etc"), self.plan.etc_files)
        site_content = ImageTree(restrictions(read_only=True), recursive=self.user_ns, skip=())
        udi_image = config.opt_udi_image
        if not udi_image and self.plan.sshd_files:
            udi_image = installed_udi_image()  # the job's sshd needs one (sshd.py)
        if udi_image:
            site_content.add(udi_image, self.path("opt/udiImage"))
        for module in self.plan.modules:
            if module.copy_path:
                target = self.path(f"opt/udiImage/modules/{module.name}")
                os.mkdir(target, 0o755)
                site_content.add(module.copy_path, target)
        gpu = self.plan.gpu
        for host, container_path in gpu.files if gpu is not None else ():
            # The driver's files, read-only, under siteResources (site configuration).
            target = self.path(container_path.lstrip("/"))
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            make_mount_point(target, directory=False)
            bind(host, target, flags=restrictions(read_only=True), propagation=MountFlag.PRIVATE)
        for module in self.plan.modules:
            if module.roothook:
                run_hook(module.roothook, module.key("roothook"), self.root)

    def site_volume(self, spec: VolumeSpec, origin: str) -> None:
        volumes.check_site_volume(spec, origin)
        if spec.per_node_cache is not None:
            raise volumes.VolumeError(
                f"{origin}: site volume {spec}: perNodeCache volumes are made by setupRoot"
            )
        source = volumes.host_source(spec, origin)
        root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            target = volumes.destination(
                root_fd,
                spec,
                origin,
                user=False,
                root_device=os.fstat(root_fd).st_dev,
                devices=None,
            )
        finally:
            os.close(root_fd)
        is_dev = source == "/dev" or source.startswith("/dev/")
        try:
            bind_staged(
                source,
                fd_path(target.fd),
                self.staging,
                flags=restrictions(read_only=spec.read_only, nodev=not is_dev),
                recursive=spec.recursive or source == "/dev" or self.user_ns,
                propagation=self.propagation(spec),
            )
        finally:
            target.close()

    def kernel_interfaces(self) -> None:
        nosuid_nodev = restrictions(read_only=False)
        proc_flags = nosuid_nodev | MountFlag.NOEXEC
        if self.user_ns:
            self.host_bind("/proc", "proc", proc_flags, recursive=True)
        else:
            mount("proc", self.path("proc"), "proc", proc_flags)
        self.host_bind("/sys", "sys", nosuid_nodev, recursive=self.user_ns)
        if self.plan.gpu is not None:
            from shifter.runtime.rootfs.devtree import build_dev

            credentials = self.plan.credentials
            acting = ActingAs(*credentials) if credentials and not self.user_ns else None
            build_dev(self.path("dev"), self.plan.gpu, acting)
        else:
            self.host_bind("/dev", "dev", MountFlag.NOSUID, recursive=True)
        self.host_bind("/tmp", "tmp", nosuid_nodev, recursive=self.user_ns)
        if os.access("/var/tmp", os.X_OK):
            self.host_bind("/var/tmp", "var/tmp", nosuid_nodev, recursive=self.user_ns)

    def host_bind(self, source: str, relative: str, flags: MountFlag, *, recursive: bool) -> None:
        private = MountFlag.PRIVATE
        bind(source, self.path(relative), flags=flags, recursive=recursive, propagation=private)

    def image_content(self, image_root: str) -> None:
        directory_image = not self.image_file
        flags = restrictions(read_only=not directory_image)
        tree = ImageTree(
            flags,
            recursive=directory_image and self.user_ns,
            skip=(self.config.udi_mount, self.config.loop_mount),
            # An image file is one mount, so one statvfs serves every bind from it; a
            # directory image may span several mounts.
            source_flags=None if directory_image else kept_flags(image_root),
        )
        tree.add(image_root, self.root)
        tree.add(os.path.join(image_root, "var"), self.path("var"))
        tree.add(os.path.join(image_root, "opt"), self.path("opt"))
        os.mkdir(self.path("etc/ssh"), 0o755)
        tree.add(os.path.join(image_root, "etc"), self.path("etc"), etc=True)

    def user_volumes(self) -> None:
        if not self.plan.user_volumes:
            return
        root_fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            root_device = os.fstat(root_fd).st_dev
            devices = {root_device}
            image_dir = self.config.loop_mount if self.image_file else self.plan.image_path
            for path in (image_dir, self.path("tmp"), self.path("var/tmp")):
                devices.add(os.stat(path).st_dev)
            for spec in self.plan.user_volumes:
                self.user_volume(root_fd, spec, root_device, devices)
        finally:
            os.close(root_fd)

    def user_volume(
        self, root_fd: int, spec: VolumeSpec, root_device: int, devices: set[int]
    ) -> None:
        origin = "--volume" if self.user_ns else "-v"  # how the user gave it
        if spec.per_node_cache is not None:
            self.per_node_cache(root_fd, spec, root_device, devices)
            return
        source = self.user_source(root_fd, spec, origin)
        try:
            target = volumes.destination(
                root_fd, spec, origin, user=True, root_device=root_device, devices=devices
            )
            try:
                bind_staged(
                    fd_path(source.fd),
                    fd_path(target.fd),
                    self.staging,
                    flags=restrictions(
                        read_only=spec.read_only or volumes.user_source_read_only(source.path)
                    ),
                    # In the user namespace, a source holding other mounts (a site
                    # filesystem's, /tmp's) can only be bound with them: they are locked.
                    recursive=self.user_ns,
                    propagation=self.propagation(spec),
                )
            except ShifterError as error:
                raise volumes.VolumeError(
                    f"volume {spec}: cannot bind {source.path} onto {target.path}: {error}"
                ) from None
            finally:
                target.close()
        finally:
            source.close()

    def user_source(self, root_fd: int, spec: VolumeSpec, origin: str) -> Resolved:
        credentials = self.plan.credentials
        if credentials is None:  # the user's own namespace: the lookup is the user's anyway
            return volumes.container_source(root_fd, spec, origin)
        # As root, but looked up with the user's permissions: a directory the user cannot
        # reach (under another user's 0700 directory) must not become reachable.
        with ActingAs(*credentials):
            return volumes.container_source(root_fd, spec, origin)

    def per_node_cache(
        self, root_fd: int, spec: VolumeSpec, root_device: int, devices: set[int]
    ) -> None:
        if self.user_ns or self.plan.credentials is None:
            raise volumes.VolumeError(
                f"volume {spec}: perNodeCache needs the privileged path",
                hint="ask for it when the job starts (the batch system's setupRoot), or "
                "use a directory under /tmp",
            )
        from shifter.runtime.rootfs.pernodecache import mount_per_node_cache

        target = volumes.destination(
            root_fd, spec, "-v", user=True, root_device=root_device, devices=devices
        )
        try:
            uid, gid, _ = self.plan.credentials
            mount_per_node_cache(
                self.config, spec, self.staging, uid=uid, gid=gid,
                propagation=self.propagation(spec),
            )  # fmt: skip
            mount(self.staging, fd_path(target.fd), None, MountFlag.MOVE)
        finally:
            target.close()


def build_container(plan: ContainerPlan) -> None:
    """Build the container root at udiMount (in the current mount namespace)."""
    _Builder(plan).build()
