"""The udiRoot.conf key table: every key shifter knows, its model field and its converter.

This table, `docs/config-udiroot.md` and `shifter/data/udiRoot.conf.example` list the same keys; a
unit test keeps them in step.
"""

from __future__ import annotations

from types import MappingProxyType

from shifter.runtime.config import values as v

MODULE_PREFIX = "module_"


class KeySpec:
    """One key: its spelling in the file, its model field and how its value is read.

    A plain class, not a dataclass: it is internal, and every dataclass costs the launch
    path about a millisecond to create.
    """

    __slots__ = ("convert", "deprecated", "field", "name", "repeats", "required")

    def __init__(
        self,
        name: str,
        field: str,
        convert: v.Converter,
        *,
        repeats: bool = False,
        required: bool = False,
        deprecated: bool = False,
    ) -> None:
        self.name = name
        self.field = field
        self.convert = convert
        # list keys: each occurrence appends; other keys: the last occurrence wins
        self.repeats = repeats
        self.required = required
        # accepted so old files still load, but shifter does nothing with it
        self.deprecated = deprecated

    def __repr__(self) -> str:
        return f"KeySpec({self.name!r})"


# Settings a module shares with the whole file: same spelling, field and reading.
_SITE_KEYS = (
    KeySpec("siteFs", "site_fs", v.to_site_fs, repeats=True),
    KeySpec("siteEnv", "site_env", v.to_env_entries, repeats=True),
    KeySpec("siteEnvAppend", "site_env_append", v.to_env_entries, repeats=True),
    KeySpec("siteEnvPrepend", "site_env_prepend", v.to_env_entries, repeats=True),
    KeySpec("siteEnvUnset", "site_env_unset", v.to_env_names, repeats=True),
)

GLOBAL_KEYS: tuple[KeySpec, ...] = (
    KeySpec("udiMount", "udi_mount", v.to_path, required=True),
    KeySpec("loopMount", "loop_mount", v.to_path, required=True),
    KeySpec("imagePath", "image_path", v.to_path, required=True),
    KeySpec("rootfsType", "rootfs_type", v.to_choice("tmpfs", "ramfs"), required=True),
    KeySpec("udiRootPath", "udi_root_path", v.to_path),
    KeySpec("sitePreMountHook", "site_pre_mount_hook", v.to_path),
    KeySpec("sitePostMountHook", "site_post_mount_hook", v.to_path),
    KeySpec("optUdiImage", "opt_udi_image", v.to_path),
    KeySpec("etcPath", "etc_path", v.to_path),
    KeySpec("siteResources", "site_resources", v.to_path),
    KeySpec("gpuLibraries", "gpu_libraries", v.to_paths, repeats=True),
    KeySpec("gpuLibraries32", "gpu_libraries32", v.to_paths, repeats=True),
    KeySpec("gpuBinaries", "gpu_binaries", v.to_paths, repeats=True),
    KeySpec("gpuDevices", "gpu_devices", v.to_paths, repeats=True),
    KeySpec("gpuDeviceUuids", "gpu_device_uuids", v.to_gpu_uuids, repeats=True),
    KeySpec("gpuControlDevices", "gpu_control_devices", v.to_paths, repeats=True),
    KeySpec("gpuCdiSpec", "gpu_cdi_spec", v.to_cdi_spec),
    KeySpec("perNodeCachePath", "per_node_cache_path", v.to_path),
    KeySpec("mountHelperSocket", "mount_helper_socket", v.to_path),
    KeySpec("modprobePath", "modprobe_path", v.to_path),
    KeySpec("insmodPath", "insmod_path", v.to_path),
    KeySpec("cpPath", "cp_path", v.to_path),
    KeySpec("mvPath", "mv_path", v.to_path),
    KeySpec("chmodPath", "chmod_path", v.to_path),
    KeySpec("ddPath", "dd_path", v.to_path),
    KeySpec("mkfsXfsPath", "mkfs_xfs_path", v.to_path),
    KeySpec("allowLocalChroot", "allow_local_chroot", v.to_bool),
    KeySpec("autoLoadKernelModule", "auto_load_kernel_module", v.to_bool),
    KeySpec("mountUdiRootWritable", "mount_udi_root_writable", v.to_bool),
    KeySpec("allowLibcPwdCalls", "allow_libc_pwd_calls", v.to_bool),
    KeySpec("populateEtcDynamically", "populate_etc_dynamically", v.to_bool),
    KeySpec("maxGroupCount", "max_group_count", v.to_count(65536)),
    KeySpec("gatewayTimeout", "gateway_timeout", v.to_count(86400)),
    KeySpec("gatewayConnectTimeout", "gateway_connect_timeout", v.to_count(86400)),
    KeySpec("perNodeCacheSizeLimit", "per_node_cache_size_limit", v.to_size),
    KeySpec(
        "perNodeCacheAllowedFsType",
        "per_node_cache_allowed_fs_types",
        v.to_fs_types,
        repeats=True,
    ),
    KeySpec("mountPropagationStyle", "mount_propagation_style", v.to_choice("private", "slave")),
    *_SITE_KEYS,
    KeySpec("usersToImport", "users_to_import", v.to_user_names, repeats=True),
    KeySpec("imageGateway", "image_gateways", v.to_urls, repeats=True),
    KeySpec("system", "system", v.to_system_name),
    KeySpec("batchType", "batch_type", v.to_text),
    KeySpec(
        "defaultImageType",
        "default_image_type",
        v.to_choice("docker", "custom", "id", "local"),
    ),
    KeySpec("nodeContextPrefix", "node_context_prefix", v.to_text),
    KeySpec("defaultModules", "default_modules", v.to_module_csv),
    KeySpec("optionalSshdAsRoot", "optional_sshd_as_root", v.to_text, deprecated=True),
    KeySpec("kmodBasePath", "kmod_base_path", v.to_text, deprecated=True),
    KeySpec("kmodCacheFile", "kmod_cache_file", v.to_text, deprecated=True),
)

# The <subkey> of module_<name>_<subkey>, with the ModuleConfig field it fills.
MODULE_KEYS: tuple[KeySpec, ...] = (
    *_SITE_KEYS,
    KeySpec("conflict", "conflicts", v.to_module_words, repeats=True),
    KeySpec("copyPath", "copy_path", v.to_path),
    KeySpec("enabled", "enabled", v.to_bool),
    KeySpec("roothook", "roothook", v.to_path),
    KeySpec("userhook", "userhook", v.to_path),
)

_GLOBAL_BY_NAME = MappingProxyType({spec.name: spec for spec in GLOBAL_KEYS})
_MODULE_BY_NAME = MappingProxyType({spec.name: spec for spec in MODULE_KEYS})


def key_spec(name: str) -> KeySpec | None:
    """The spec of a global key (exact spelling), or None."""
    return _GLOBAL_BY_NAME.get(name)


def module_key_spec(subkey: str) -> KeySpec | None:
    """The spec of a module subkey (`siteFs` of `module_x_siteFs`), or None."""
    return _MODULE_BY_NAME.get(subkey)


def documented_keys() -> frozenset[str]:
    """Every key as the documentation spells it (`module_<name>_siteFs` for module keys)."""
    names = {spec.name for spec in GLOBAL_KEYS}
    names.update(f"{MODULE_PREFIX}<name>_{spec.name}" for spec in MODULE_KEYS)
    return frozenset(names)


def closest(word: str, candidates: list[str]) -> str | None:
    """The candidate `word` was most likely meant to be (case-insensitive), or None."""
    import difflib  # only on the error path: it is not free to import

    by_lower = {candidate.lower(): candidate for candidate in candidates}
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def suggest_key(key: str) -> str | None:
    """The known key closest to an unknown `key`, for the "did you mean" hint."""
    if key.startswith(MODULE_PREFIX):
        # The name is taken up to the first '_'; the rest, underscores dropped, is matched
        # against the settings, so `module_mpich_copy_path` suggests module_mpich_copyPath.
        name, _, tail = key[len(MODULE_PREFIX) :].partition("_")
        match = closest(tail.replace("_", ""), [spec.name for spec in MODULE_KEYS])
        return f"{MODULE_PREFIX}{name}_{match}" if match and name else None
    return closest(key, [spec.name for spec in GLOBAL_KEYS])
