"""GPU selection and the CDI spec reader: pure parts."""

from __future__ import annotations

import json

import pytest

from shifter.errors import ConfigError, ParseError
from shifter.runtime.config.parse import parse_udiroot_config
from shifter.runtime.site.cdi import parse_cdi_json
from shifter.runtime.site.gpu import GpuError, requested

pytestmark = pytest.mark.unit

SPEC = {
    "cdiVersion": "0.5.0",
    "kind": "nvidia.com/gpu",
    "devices": [
        {"name": "0", "containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}},
        {"name": "GPU-abc", "containerEdits": {"deviceNodes": [
            {"path": "/dev/nvidia0", "hostPath": "/host/dev/nvidia0"}]}},
    ],
    "containerEdits": {
        "deviceNodes": [{"path": "/dev/nvidiactl"}],
        "mounts": [{"hostPath": "/usr/lib/libcuda.so.1", "containerPath": "/usr/lib/libcuda.so.1"}],
        "env": ["NVIDIA_VISIBLE_DEVICES=void", "EMPTY="],
        "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk"}],
    },
}  # fmt: skip


@pytest.mark.parametrize("value", [None, "", "  ", "NoDevFiles"])
def test_off_values(value: str | None) -> None:
    assert requested(value, "CUDA_VISIBLE_DEVICES") == ()


def test_entries_are_trimmed() -> None:
    assert requested(" 0, GPU-abc ", "CUDA_VISIBLE_DEVICES") == ("0", "GPU-abc")


def test_an_empty_entry_is_refused() -> None:
    with pytest.raises(GpuError, match=r"^--gpus='0,,1' has an empty entry$"):
        requested("0,,1", "--gpus")


def test_a_spec_is_read() -> None:
    spec = parse_cdi_json(json.dumps(SPEC), "/etc/cdi/nvidia.json")
    assert spec.kind == "nvidia.com/gpu"
    assert list(spec.devices) == ["0", "GPU-abc"]
    assert [(n.path, n.host_path) for n in spec.devices["0"]] == [("/dev/nvidia0",) * 2]
    assert spec.devices["GPU-abc"][0].host_path == "/host/dev/nvidia0"
    assert [(n.path, n.host_path) for n in spec.nodes] == [("/dev/nvidiactl",) * 2]
    assert [(m.host_path, m.container_path) for m in spec.mounts] == [
        ("/usr/lib/libcuda.so.1", "/usr/lib/libcuda.so.1")
    ]
    assert spec.env == (("NVIDIA_VISIBLE_DEVICES", "void"), ("EMPTY", ""))
    assert spec.ignored_hooks == 1


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.pop("kind"), "kind must be a non-empty string"),
    (lambda s: s.update(devices=[]), "the spec lists no devices"),
    (lambda s: s.update(devices={}), "devices must be a list"),
    (lambda s: s["devices"].append(s["devices"][0]), "device '0' is listed twice"),
    (lambda s: s["devices"][0]["containerEdits"]["deviceNodes"][0].update(path="nvidia0"),
     "devices[0].containerEdits.deviceNodes[0].path must be an absolute path"),
    (lambda s: s["containerEdits"].update(env=["NOEQUALS"]), "'NOEQUALS' is not NAME=VALUE"),
    (lambda s: s["devices"][1]["containerEdits"].update(env=["A=1"]),
     "per-device mounts and env are not supported"),
])  # fmt: skip
def test_bad_specs(change: object, message: str) -> None:
    spec = json.loads(json.dumps(SPEC))
    change(spec)  # type: ignore[operator]
    with pytest.raises(ParseError, match=r"^/x\.json: ") as caught:
        parse_cdi_json(json.dumps(spec), "/x.json")
    assert message in str(caught.value)


def test_not_json() -> None:
    with pytest.raises(ParseError, match=r"^/x.json: not valid JSON") as caught:
        parse_cdi_json("kind: nvidia.com/gpu\n", "/x.json")
    assert caught.value.hint and "--format=json" in caught.value.hint


BASE = "udiMount=/u\nloopMount=/l\nimagePath=/i\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"


def test_gpu_keys_load() -> None:
    config = parse_udiroot_config(
        BASE + "gpuDevices=/dev/nvidia0 /dev/nvidia1\ngpuDevices=/dev/nvidia2\n"
        "gpuDeviceUuids=GPU-a GPU-b\ngpuCdiSpec=/etc/cdi/nvidia.json\n", "/etc/udiRoot.conf")
    assert config.gpu_devices == ("/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2")
    assert config.gpu_device_uuids == ("GPU-a", "GPU-b")
    assert config.gpu_cdi_spec == "/etc/cdi/nvidia.json"


@pytest.mark.parametrize(("line", "message"), [
    ("gpuCdiSpec=/etc/cdi/nvidia.toml", "is not a CDI spec"),
    ("gpuDeviceUuids=1234", "'1234' is not a GPU UUID"),
    ("gpuDevices=dev/nvidia0", "must be an absolute path"),
])  # fmt: skip
def test_bad_gpu_keys_name_their_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^/etc/udiRoot\.conf:6 ") as caught:
        parse_udiroot_config(BASE + line + "\n", "/etc/udiRoot.conf")
    assert message in str(caught.value)
