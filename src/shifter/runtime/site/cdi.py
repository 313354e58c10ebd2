"""The parts of a Container Device Interface spec (github.com/cncf-tags/container-device-
interface, the JSON NVIDIA's `nvidia-ctk cdi generate --format=json`, AMD's and Intel's
tools write) that a GPU launch uses: the named devices' device nodes, and the spec-wide
device nodes, mounts and environment.

A pure parser: text in, a `CdiSpec` or a `ParseError` naming the file out. JSON with
Python's `json`; YAML (`.yaml`, `.yml`) with the project's own reader of the subset CDI
generators write (cdiyaml.py), imported only for such a spec: no YAML library on the
`shifter` launch path. Hooks (NVIDIA's ldcache update, symlink creation) are not run: shifter's own
LD_LIBRARY_PATH takes their place; a spec's hooks are listed in `ignored_hooks`.
"""

from __future__ import annotations

from shifter.errors import ParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class DeviceNode:
    """A node the container gets at `path`, from `host_path` on the host. (Plain class.)"""

    __slots__ = ("host_path", "path")

    def __init__(self, path: str, host_path: str) -> None:
        self.path = path
        self.host_path = host_path

    def __repr__(self) -> str:
        return f"DeviceNode({self.path!r}, {self.host_path!r})"


class Mount:
    """A host file the spec binds into containers. (Plain class.)"""

    __slots__ = ("container_path", "host_path")

    def __init__(self, host_path: str, container_path: str) -> None:
        self.host_path = host_path
        self.container_path = container_path


class CdiSpec:
    """`kind`, each device's nodes by name, and the edits every device brings."""

    __slots__ = ("devices", "env", "ignored_hooks", "kind", "mounts", "nodes", "source")

    def __init__(
        self,
        source: str,
        kind: str,
        devices: Mapping[str, tuple[DeviceNode, ...]],
        nodes: tuple[DeviceNode, ...],
        mounts: tuple[Mount, ...],
        env: tuple[tuple[str, str], ...],
        ignored_hooks: int,
    ) -> None:
        self.source = source
        self.kind = kind
        self.devices = devices
        self.nodes = nodes  # the spec-wide (control) nodes
        self.mounts = mounts
        self.env = env
        self.ignored_hooks = ignored_hooks


def _fail(source: str, message: str) -> ParseError:
    return ParseError(
        message, source=source, hint="regenerate the spec (nvidia-ctk cdi generate --format=json)"
    )


def _object(value: object, source: str, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _fail(source, f"{where} must be an object")
    return value


def _list(value: object, source: str, where: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(source, f"{where} must be a list")
    return value


def _string(value: object, source: str, where: str, *, absolute: bool = False) -> str:
    if not isinstance(value, str) or not value or (absolute and not value.startswith("/")):
        kind = "an absolute path" if absolute else "a non-empty string"
        raise _fail(source, f"{where} must be {kind}")
    return value


def _edits(value: object, source: str, where: str) -> tuple[
    tuple[DeviceNode, ...], tuple[Mount, ...], tuple[tuple[str, str], ...], int
]:  # fmt: skip
    edits = _object(value or {}, source, where)
    nodes = []
    for index, item in enumerate(_list(edits.get("deviceNodes"), source, f"{where}.deviceNodes")):
        node = _object(item, source, f"{where}.deviceNodes[{index}]")
        path = _string(node.get("path"), source, f"{where}.deviceNodes[{index}].path",
                       absolute=True)  # fmt: skip
        host = node.get("hostPath", path)
        nodes.append(DeviceNode(path, _string(host, source, f"{where}.deviceNodes[{index}]"
                                              ".hostPath", absolute=True)))  # fmt: skip
    mounts = []
    for index, item in enumerate(_list(edits.get("mounts"), source, f"{where}.mounts")):
        mount = _object(item, source, f"{where}.mounts[{index}]")
        mounts.append(Mount(
            _string(mount.get("hostPath"), source, f"{where}.mounts[{index}].hostPath",
                    absolute=True),
            _string(mount.get("containerPath"), source,
                    f"{where}.mounts[{index}].containerPath", absolute=True),
        ))  # fmt: skip
    env = []
    for index, item in enumerate(_list(edits.get("env"), source, f"{where}.env")):
        text = _string(item, source, f"{where}.env[{index}]")
        name, equals, env_value = text.partition("=")
        if not equals or not name:
            raise _fail(source, f"{where}.env[{index}] {text!r} is not NAME=VALUE")
        env.append((name, env_value))
    hooks = len(_list(edits.get("hooks"), source, f"{where}.hooks"))
    return tuple(nodes), tuple(mounts), tuple(env), hooks


def parse_cdi_json(text: str, source: str) -> CdiSpec:
    """Parse a JSON CDI spec; `source` is its path, for messages."""
    import json

    try:
        document = json.loads(text)
    except ValueError as error:
        raise _fail(source, f"not valid JSON: {error}") from None
    return cdi_from_document(document, source)


def parse_cdi_yaml(text: str, source: str) -> CdiSpec:
    """Parse a YAML CDI spec (the subset cdiyaml.py reads); `source` is its path."""
    from shifter.runtime.site.cdiyaml import parse_yaml_subset

    return cdi_from_document(parse_yaml_subset(text, source), source)


def parse_cdi(text: str, source: str) -> CdiSpec:
    """A CDI spec in the format its file name says (`.yaml`/`.yml`, else JSON)."""
    if source.endswith((".yaml", ".yml")):
        return parse_cdi_yaml(text, source)
    return parse_cdi_json(text, source)


def cdi_from_document(document: object, source: str) -> CdiSpec:
    """The spec from its parsed document (JSON's or YAML's: the same structure)."""
    spec = _object(document, source, "the spec")
    _string(spec.get("cdiVersion"), source, "cdiVersion")
    kind = _string(spec.get("kind"), source, "kind")
    devices: dict[str, tuple[DeviceNode, ...]] = {}
    hooks = 0
    for index, item in enumerate(_list(spec.get("devices"), source, "devices")):
        device = _object(item, source, f"devices[{index}]")
        name = _string(device.get("name"), source, f"devices[{index}].name")
        if name in devices:
            raise _fail(source, f"device {name!r} is listed twice")
        nodes, mounts, env, device_hooks = _edits(
            device.get("containerEdits"), source, f"devices[{index}].containerEdits"
        )
        if mounts or env:
            raise _fail(source, f"device {name!r}: per-device mounts and env are not supported")
        devices[name] = nodes
        hooks += device_hooks
    if not devices:
        raise _fail(source, "the spec lists no devices")
    nodes, mounts, env, common_hooks = _edits(spec.get("containerEdits"), source, "containerEdits")
    return CdiSpec(source, kind, devices, nodes, mounts, env, hooks + common_hooks)
