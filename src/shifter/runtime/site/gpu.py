"""GPU support (docs/gpu.md): which of the site's GPUs a launch gets, and what of the
driver comes with them.

On only when the selection (`CUDA_VISIBLE_DEVICES` for `shifter`, `--gpus` for setupRoot,
which the batch system fills from the job's GPUs) is set, non-empty and not `NoDevFiles`,
and the site configured GPUs (udiRoot.conf's gpu* keys, or a CDI spec). The selection
only *chooses among* the device nodes the site lists: every host path that is bound comes
from udiRoot.conf or the site's CDI spec, never from the user. Entries are GPU indices
(positions in gpuDevices; device names in a CDI spec) or `GPU-<uuid>`; one the site does
not have is an error.

What a GPU launch gets (`GpuPlan`): the selected GPUs' nodes and the control nodes in the
container's /dev (vfs.py builds a /dev without the site's other GPU nodes: devtree.py);
the driver's libraries read-only at `<siteResources>/gpu/lib64` (64-bit) and `/gpu/lib`
(32-bit), its tools at `/gpu/bin`; LD_LIBRARY_PATH prepended with the two library
directories (the host's driver must win over a stub an image may carry), PATH appended
with the tool directory, and a CDI spec's environment set.
"""

from __future__ import annotations

import os
import stat

from shifter.errors import ConfigError, ShifterError
from shifter.runtime.site.environment import APPEND, PREPEND, SET

TYPE_CHECKING = False
if TYPE_CHECKING:
    from shifter.runtime.config.load import UdiRootConfig
    from shifter.runtime.site.cdi import CdiSpec

OFF_VALUES = ("", "NoDevFiles")
ELF_CLASS_32 = 1


class GpuError(ShifterError):
    """The GPUs asked for cannot be given."""


class GpuPlan:
    """What a launch's container gets of the GPUs. `nodes`: (host node, container path);
    `files`: (host file, path in the container); `hidden_*`: every node the site lists,
    so that the container's /dev shows only those in `nodes`. (Plain class: launch path.)"""

    __slots__ = ("env_steps", "files", "hidden_devices", "hidden_paths", "nodes")

    def __init__(
        self,
        nodes: tuple[tuple[str, str], ...],
        files: tuple[tuple[str, str], ...],
        env_steps: tuple[tuple[str, str, str], ...],
        hidden_devices: frozenset[int],
        hidden_paths: frozenset[str],
    ) -> None:
        self.nodes = nodes
        self.files = files
        self.env_steps = env_steps
        self.hidden_devices = hidden_devices  # st_rdev of the site's GPU nodes
        self.hidden_paths = hidden_paths  # their names in the container's /dev


def requested(value: str | None, origin: str) -> tuple[str, ...]:
    """The entries of a selection; () when GPU support is off for it."""
    if value is None or value.strip() in OFF_VALUES:
        return ()
    entries = tuple(entry.strip() for entry in value.split(","))
    if not all(entries):
        raise GpuError(f"{origin}={value!r} has an empty entry",
                       hint="list GPU indices or GPU-<uuid>s, separated by commas")  # fmt: skip
    return entries


def load_cdi(config: UdiRootConfig) -> CdiSpec:
    from shifter.runtime.site.cdi import parse_cdi

    path = config.gpu_cdi_spec
    assert path is not None
    try:
        with open(path, encoding="utf-8") as file:
            info = os.fstat(file.fileno())
            text = file.read()
    except OSError as error:
        raise config.error("gpuCdiSpec", f"cannot read {path}: {error.strerror}") from None
    # It names the device nodes bound with device access: site configuration, as
    # udiRoot.conf itself is.
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise config.error(
            "gpuCdiSpec",
            f"{path} must be owned by root and not writable by group or others",
            hint=f"chown root {path}; chmod go-w {path}",
        )
    return parse_cdi(text, path)


def _device(path: str, what: str, config: UdiRootConfig, key: str) -> int:
    """st_rdev of the character device at `path` (site configuration)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise config.error(key, f"{what} {path} does not exist ({error.strerror})",
                           hint="fix the site's GPU configuration") from None  # fmt: skip
    if not stat.S_ISCHR(info.st_mode):
        raise config.error(key, f"{what} {path} is not a character device")
    return info.st_rdev


def _rdev(path: str) -> int | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_rdev if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode) else None


def _container(all_nodes: list[tuple[str, str, str]], host: str) -> str:
    return next(path for node, path, _ in all_nodes if node == host)


def _dev_path(path: str, source: str) -> str:
    if not path.startswith("/dev/") or "/../" in path or path.endswith("/.."):
        raise ConfigError(f"{source}: device node path {path} is not under /dev")
    return path


def _choose(entries: tuple[str, ...], names: dict[str, int], count: int, origin: str,
            where: str) -> list[int]:  # fmt: skip
    chosen: list[int] = []
    for entry in entries:
        index = names.get(entry)
        if index is None:
            known = ", ".join(names) or "none"
            raise GpuError(
                f"{origin} names GPU {entry!r}, which this node does not have",
                hint=f"GPUs here: {known} ({where})",
            )
        if index not in chosen:
            chosen.append(index)
    return chosen


def plan_gpus(config: UdiRootConfig, selection: str | None, origin: str) -> GpuPlan | None:
    """The plan for `selection` (None: off and nothing to hide)."""
    if not config.gpus_configured():
        return None
    entries = requested(selection, origin)
    if config.gpu_cdi_spec:
        all_nodes, nodes, mounts, env = _from_cdi(config, entries, origin)
    else:
        all_nodes, nodes = _from_keys(config, entries, origin)
        mounts, env = (), ()
    if not entries and not any(os.path.exists(path) for _, path, _ in all_nodes):
        return None  # off, and the host's /dev shows none of the site's GPU nodes
    for host, _, key in all_nodes:
        if (host, _container(all_nodes, host)) in nodes:
            _device(host, "GPU device node", config, key)  # a selected node must be one
    hidden = frozenset(_rdev(host) for host, _, _ in all_nodes) - {None}
    hidden_paths = frozenset(path for _, path, _ in all_nodes)
    if not entries:
        return GpuPlan((), (), (), hidden, hidden_paths)
    files, steps = _driver_files(config, mounts)
    steps += tuple((SET, name, value) for name, value in env)
    return GpuPlan(tuple(nodes), files, steps, hidden, hidden_paths)


def _from_keys(
    config: UdiRootConfig, entries: tuple[str, ...], origin: str
) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    devices = config.gpu_devices
    names = {str(index): index for index in range(len(devices))}
    names.update({uuid: index for index, uuid in enumerate(config.gpu_device_uuids)})
    where = f"gpuDevices in {config.origin('gpuDevices')}"
    chosen = _choose(entries, names, len(devices), origin, where)
    all_nodes = [(p, "/dev/" + os.path.basename(p), "gpuDevices") for p in devices]
    all_nodes += [(p, "/dev/" + os.path.basename(p), "gpuControlDevices")
                  for p in config.gpu_control_devices]  # fmt: skip
    nodes = [(devices[i], "/dev/" + os.path.basename(devices[i])) for i in chosen]
    if entries:
        nodes += [(p, "/dev/" + os.path.basename(p)) for p in config.gpu_control_devices]
    return all_nodes, nodes


def _from_cdi(config: UdiRootConfig, entries: tuple[str, ...], origin: str) -> tuple[
    list[tuple[str, str, str]], list[tuple[str, str]], tuple[tuple[str, str], ...],
    tuple[tuple[str, str], ...],
]:  # fmt: skip
    spec = load_cdi(config)
    names = {name: index for index, name in enumerate(spec.devices)}
    by_index = list(spec.devices.values())
    chosen = _choose(entries, names, len(by_index), origin, f"devices of {spec.source}")
    all_nodes = [(n.host_path, _dev_path(n.path, spec.source), "gpuCdiSpec")
                 for group in (*by_index, spec.nodes) for n in group]  # fmt: skip
    nodes: list[tuple[str, str]] = []
    for index in chosen:
        nodes += [(n.host_path, n.path) for n in by_index[index]]
    if entries:
        nodes += [(n.host_path, n.path) for n in spec.nodes]
    nodes = list(dict.fromkeys(nodes))  # "all" and "0" name the same nodes
    for host, _ in nodes:
        try:
            os.stat(host)
        except OSError:
            raise ConfigError(
                f"{spec.source}: the CDI spec names device node {host}, which does not exist",
                hint="regenerate the spec for this node's GPUs",
            ) from None
    mounts = tuple((m.host_path, m.container_path) for m in spec.mounts)
    return all_nodes, nodes, mounts, spec.env


def _elf_class(path: str) -> int | None:
    try:
        with open(path, "rb") as file:
            head = file.read(5)
    except OSError:
        return None
    return head[4] if len(head) == 5 and head[:4] == b"\x7fELF" else None


def _driver_files(
    config: UdiRootConfig, mounts: tuple[tuple[str, str], ...]
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str, str], ...]]:
    libraries = [*config.gpu_libraries]
    libraries32 = [*config.gpu_libraries32]
    binaries = [*config.gpu_binaries]
    for host, container in mounts:
        # A CDI spec binds the driver where the host has it; shifter gathers it under
        # siteResources (images keep their own /usr/lib). Other mounts (firmware,
        # sockets) are not taken.
        if ".so" in os.path.basename(container):
            (libraries32 if _elf_class(host) == ELF_CLASS_32 else libraries).append(host)
        elif os.path.isfile(host) and os.access(host, os.X_OK):
            binaries.append(host)
    if not (libraries or libraries32 or binaries):
        return (), ()
    if not config.site_resources:
        raise config.error(
            "siteResources",
            "the GPU driver's libraries and tools need siteResources",
            hint="set siteResources, e.g. siteResources=/opt/shifter/site-resources",
        )
    base = config.site_resources + "/gpu"
    files: list[tuple[str, str]] = []
    for directory, paths in (("lib64", libraries), ("lib", libraries32), ("bin", binaries)):
        for path in paths:
            if not os.path.exists(path):
                raise config.error("gpuLibraries" if directory != "bin" else "gpuBinaries",
                                   f"GPU driver file {path} does not exist")  # fmt: skip
            files.append((path, f"{base}/{directory}/{os.path.basename(path)}"))
    return tuple(dict.fromkeys(files)), _driver_env(base)


def _driver_env(base: str) -> tuple[tuple[str, str, str], ...]:
    return ((PREPEND, "LD_LIBRARY_PATH", f"{base}/lib64:{base}/lib"),
            (APPEND, "PATH", f"{base}/bin"))  # fmt: skip


def env_steps_of_container(config: UdiRootConfig, root: str) -> tuple[tuple[str, str, str], ...]:
    """On entering a setupRoot container: the GPU environment when it was built with GPUs
    (its `<siteResources>/gpu` exists), whatever the caller's own selection."""
    if not config.site_resources or not config.gpus_configured():
        return ()
    if not os.path.isdir(root + config.site_resources + "/gpu"):
        return ()
    steps = _driver_env(config.site_resources + "/gpu")
    if config.gpu_cdi_spec:
        steps += tuple((SET, name, value) for name, value in load_cdi(config).env)
    return steps
