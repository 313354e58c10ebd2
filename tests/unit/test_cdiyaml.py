"""The YAML subset reader for CDI specs (shifter.runtime.site.cdiyaml): what nvidia-ctk writes
reads as the JSON of the same spec; anything beyond the subset is refused with its line."""

from __future__ import annotations

import pytest

from shifter.errors import ParseError
from shifter.runtime.site.cdi import parse_cdi
from shifter.runtime.site.cdiyaml import parse_yaml_subset
from tests.services.gpu_fixtures import block_yaml

# The shape of `nvidia-ctk cdi generate` output (abridged), comments and quoting added.
NVIDIA = """\
---
cdiVersion: 0.5.0   # the CDI version
containerEdits:
  deviceNodes:
  - path: /dev/nvidia-modeset
  - path: /dev/nvidiactl
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  hooks:
  - args:
    - nvidia-ctk
    - hook
    - create-symlinks
    hookName: createContainer
    path: /usr/bin/nvidia-ctk
  mounts:
  - containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05
    hostPath: '/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05'
    options: [ro, nosuid, nodev, bind]
devices:
- containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
  name: "0"
- containerEdits:
    deviceNodes:
    - hostPath: /dev/nvidia1
      path: /dev/nvidia1
  name: 'GPU-2b7e#1'
kind: nvidia.com/gpu
"""

EXPECTED = {
    "cdiVersion": "0.5.0",
    "containerEdits": {
        "deviceNodes": [{"path": "/dev/nvidia-modeset"}, {"path": "/dev/nvidiactl"}],
        "env": ["NVIDIA_VISIBLE_DEVICES=void"],
        "hooks": [
            {
                "args": ["nvidia-ctk", "hook", "create-symlinks"],
                "hookName": "createContainer",
                "path": "/usr/bin/nvidia-ctk",
            }
        ],
        "mounts": [
            {
                "containerPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",
                "hostPath": "/usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05",
                "options": ["ro", "nosuid", "nodev", "bind"],
            }
        ],
    },
    "devices": [
        {"containerEdits": {"deviceNodes": [{"path": "/dev/nvidia0"}]}, "name": "0"},
        {
            "containerEdits": {
                "deviceNodes": [{"hostPath": "/dev/nvidia1", "path": "/dev/nvidia1"}]
            },
            "name": "GPU-2b7e#1",
        },
    ],
    "kind": "nvidia.com/gpu",
}


def test_what_nvidia_ctk_writes() -> None:
    assert parse_yaml_subset(NVIDIA, "/etc/cdi/nvidia.yaml") == EXPECTED


def test_the_spec_reads_the_same_from_yaml_and_json() -> None:
    import json

    from_yaml = parse_cdi(NVIDIA, "/etc/cdi/nvidia.yaml")
    from_json = parse_cdi(json.dumps(EXPECTED), "/etc/cdi/nvidia.json")
    for spec in (from_yaml, from_json):
        assert spec.kind == "nvidia.com/gpu"
        assert [n.host_path for n in spec.devices["0"]] == ["/dev/nvidia0"]
        assert [n.path for n in spec.nodes] == ["/dev/nvidia-modeset", "/dev/nvidiactl"]
        assert spec.env == (("NVIDIA_VISIBLE_DEVICES", "void"),) and spec.ignored_hooks == 1


def test_block_yaml_round_trip() -> None:
    assert parse_yaml_subset("\n".join(block_yaml(EXPECTED)), "x.yaml") == EXPECTED


@pytest.mark.parametrize(("text", "scalar"), [
    ('a: "x\\ty\\u00e9 \\"q\\""', 'x\ty\u00e9 "q"'),
    ("a: 'it''s # not a comment'", "it's # not a comment"),
    ("a: ~", None),
    ("a: []", []),
    ("a: {}", {}),
    ("a: ['x, y', z]", ["x, y", "z"]),
    ("a: 0", "0"),
])  # fmt: skip
def test_scalars(text: str, scalar: object) -> None:
    assert parse_yaml_subset(text, "x.yaml") == {"a": scalar}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a: 1\nb: &anchor 2\n", 2, "uses YAML beyond what CDI specs need"),
    ("a: *alias\n", 1, "uses YAML beyond what CDI specs need"),
    ("a: |\n  text\n", 1, "uses YAML beyond what CDI specs need"),
    ("a: !!str x\n", 1, "uses YAML beyond what CDI specs need"),
    ("a: {b: c}\n", 1, "uses YAML beyond what CDI specs need"),
    ("a: [[x]]\n", 1, "only flat flow sequences"),
    ("a: 1\na: 2\n", 2, "key 'a' appears twice"),
    ("a:\n  b: 1\n    c: 2\n", 3, "unexpected indentation"),
    ("a: 1\n\tb: 2\n", 2, "a tab in the indentation"),
    ("a: 1\n---\nb: 2\n", 2, "only one YAML document"),
    ("a: 'open\n", 1, "unterminated quoted string"),
    ('a: "\\q"\n', 1, "unsupported escape"),
    ("a:\n  - x\n  y\n", 3, "unexpected indentation"),
    ("a: 1\nb\n", 2, "expected 'key: value'"),
])  # fmt: skip
def test_refusals_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ParseError, match=message) as caught:
        parse_yaml_subset(text, "/etc/cdi/x.yaml")
    assert str(caught.value).startswith(f"/etc/cdi/x.yaml:{line}: ")
    assert "--format=json" in (caught.value.hint or "")
