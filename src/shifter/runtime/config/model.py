"""The typed, frozen udiRoot.conf: what the runtime reads after the file has been checked.

Built once per command by `shifter.runtime.config.load.load_udiroot_config`. Every value
remembers where it came from: `origins` maps each key that was set to its file and line,
site volumes and environment entries carry their own line, and `error(key, ...)` builds a
`ConfigError` that points there, so a mount that fails much later can still say
`udiRoot.conf:12 key 'siteFs': ...`.

`Frozen` classes, not pydantic or dataclasses: this is imported on every `shifter` launch,
where importing `dataclasses` alone costs about 10 ms (see `shifter.frozen`).
"""

from __future__ import annotations

import os
import stat
from types import MappingProxyType

from shifter.errors import ConfigError
from shifter.frozen import Frozen
from shifter.runtime.config.keys import key_spec
from shifter.runtime.config.values import EnvEntry, Origin, SiteVolume, fail

TYPE_CHECKING = False  # launch path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Mapping

# Tools whose path udiRoot.conf sets; checked only when used (see tool_path).
TOOL_KEYS = (
    "modprobePath",
    "insmodPath",
    "cpPath",
    "mvPath",
    "chmodPath",
    "ddPath",
    "mkfsXfsPath",
)

# The default of `origins`: immutable, so one instance serves every config.
_NO_ORIGINS: Mapping[str, Origin] = MappingProxyType({})


class ModuleConfig(Frozen, kw_only=True, uncompared=("origins",)):
    """A site module, from its `module_<name>_<subkey>` lines."""

    name: str
    origin: Origin  # the first line that mentions the module
    enabled: bool = True
    site_env: tuple[EnvEntry, ...] = ()
    site_env_append: tuple[EnvEntry, ...] = ()
    site_env_prepend: tuple[EnvEntry, ...] = ()
    site_env_unset: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    site_fs: tuple[SiteVolume, ...] = ()
    copy_path: str | None = None
    roothook: str | None = None
    userhook: str | None = None
    # subkey ("siteFs") -> where it was last set
    origins: Mapping[str, Origin] = _NO_ORIGINS

    def key(self, subkey: str) -> str:
        """The udiRoot.conf key of one of this module's settings."""
        return f"module_{self.name}_{subkey}"

    def error(self, subkey: str, message: str, *, hint: str | None = None) -> ConfigError:
        """A `ConfigError` pointing at the line that set `subkey` (or the module's first line)."""
        origin = self.origins.get(subkey, self.origin)
        return fail(origin, self.key(subkey), message, hint)


class UdiRootConfig(Frozen, kw_only=True, uncompared=("origins",)):
    """Every udiRoot.conf key, typed. Field defaults are the documented defaults."""

    source: str
    # required
    udi_mount: str
    loop_mount: str
    image_path: str
    rootfs_type: str
    # paths
    udi_root_path: str | None = None
    site_pre_mount_hook: str | None = None
    site_post_mount_hook: str | None = None
    opt_udi_image: str | None = None
    etc_path: str | None = None
    site_resources: str | None = None
    # GPU support (gpu.py): host files and device nodes, in GPU index order for devices
    gpu_libraries: tuple[str, ...] = ()
    gpu_libraries32: tuple[str, ...] = ()
    gpu_binaries: tuple[str, ...] = ()
    gpu_devices: tuple[str, ...] = ()
    gpu_device_uuids: tuple[str, ...] = ()
    gpu_control_devices: tuple[str, ...] = ()
    gpu_cdi_spec: str | None = None
    per_node_cache_path: str | None = None
    # shifter-mountd's socket: unprivileged launches get the kernel's squashfs mount from it
    mount_helper_socket: str | None = None
    # tools, checked when used (tool_path)
    modprobe_path: str = "/sbin/modprobe"
    insmod_path: str = "/sbin/insmod"
    cp_path: str = "/bin/cp"
    mv_path: str = "/bin/mv"
    chmod_path: str = "/bin/chmod"
    dd_path: str = "/bin/dd"
    mkfs_xfs_path: str = "/sbin/mkfs.xfs"
    # switches and numbers
    allow_local_chroot: bool = False
    auto_load_kernel_module: bool = False
    mount_udi_root_writable: bool = False
    allow_libc_pwd_calls: bool = False
    populate_etc_dynamically: bool = False
    max_group_count: int = 31
    gateway_timeout: int = 60
    gateway_connect_timeout: int = 5
    per_node_cache_size_limit: int | None = None
    per_node_cache_allowed_fs_types: tuple[str, ...] = ("xfs",)
    mount_propagation_style: str = "private"
    # site content
    site_fs: tuple[SiteVolume, ...] = ()
    site_env: tuple[EnvEntry, ...] = ()
    site_env_append: tuple[EnvEntry, ...] = ()
    site_env_prepend: tuple[EnvEntry, ...] = ()
    site_env_unset: tuple[str, ...] = ()
    users_to_import: tuple[str, ...] = ()
    # image gateway and batch system
    image_gateways: tuple[str, ...] = ()
    system: str | None = None
    batch_type: str | None = None
    default_image_type: str = "docker"
    node_context_prefix: str | None = None
    # modules, in file order
    modules: tuple[ModuleConfig, ...] = ()
    default_modules: tuple[str, ...] = ()
    # accepted for compatibility, ignored (a warning says so)
    optional_sshd_as_root: str | None = None
    kmod_base_path: str | None = None
    kmod_cache_file: str | None = None
    # key -> where its value was (last) set; list keys: their first line
    origins: Mapping[str, Origin] = _NO_ORIGINS
    # "FILE:LINE: ..." notes for the log: deprecated keys, keys set twice
    warnings: tuple[str, ...] = ()

    def origin(self, key: str) -> Origin:
        """Where `key` was set, or this file's default when the file does not set it."""
        return self.origins.get(key, Origin(self.source))

    def error(self, key: str, message: str, *, hint: str | None = None) -> ConfigError:
        """A `ConfigError` about `key`, pointing at the line that set it."""
        return fail(self.origin(key), key, message, hint)

    def check_directory(self, key: str, path: str) -> None:
        """`path` (the value of `key`: udiMount, loopMount) must be an existing directory."""
        if not os.path.isdir(path):
            raise self.error(
                key,
                f"{key} {path} does not exist or is not a directory",
                hint="the site install creates it (shifter-site-install)",
            )

    def gpus_configured(self) -> bool:
        """The site has GPUs for containers (gpuDevices or gpuCdiSpec)."""
        return bool(self.gpu_devices or self.gpu_cdi_spec)

    def module(self, name: str) -> ModuleConfig | None:
        """The module called `name` (names are case-sensitive), or None."""
        return next((module for module in self.modules if module.name == name), None)

    def require(self, key: str) -> object:
        """The value of `key`, or a `ConfigError` when this file leaves it unset or empty.

        For keys needed only by some commands (system, imageGateway, udiRootPath,
        perNodeCachePath, ...): the error happens where the value is used, not at load.
        """
        spec = key_spec(key)
        if spec is None:
            raise ValueError(f"unknown udiRoot.conf key {key!r}")
        value = getattr(self, spec.field)
        if value is None or value == ():
            # No source/key arguments: they would print the file twice in one sentence.
            raise ConfigError(
                f"{key} is not set in {self.source}",
                hint=f"add a '{key}=...' line to {self.source}",
            )
        return value

    def require_system(self) -> str:
        """The system (platform) name the image gateway knows this cluster by."""
        return str(self.require("system"))

    def require_image_gateways(self) -> tuple[str, ...]:
        """The image gateway URLs, in file order."""
        value = self.require("imageGateway")
        assert isinstance(value, tuple)
        return value

    def tool_path(self, key: str) -> str:
        """The checked path of a configured tool (`mkfsXfsPath`, ...): exists, is executable."""
        spec = key_spec(key)
        if key not in TOOL_KEYS or spec is None:
            raise ValueError(f"{key!r} is not a tool path key")
        path = getattr(self, spec.field)
        what = f"{key}={path}" + ("" if key in self.origins else " (the default)")
        hint = f"install the tool or set {key} in {self.source} to its absolute path"
        try:
            info = os.stat(path)
        except OSError as exc:
            raise self.error(key, f"{what} does not exist ({exc.strerror})", hint=hint) from None
        if not stat.S_ISREG(info.st_mode):
            raise self.error(key, f"{what} is not a regular file", hint=hint)
        if not info.st_mode & stat.S_IXUSR:
            raise self.error(key, f"{what} is not executable", hint=f"chmod u+x {path}")
        return str(path)
