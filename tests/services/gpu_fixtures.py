"""A fake GPU driver for the GPU tests (there is no GPU here): stub libcuda.so.1 and
libnvidia-ml.so.1 compiled with gcc, a fake nvidia-smi, device nodes made with mknod in
a test directory (majors no driver serves), an image holding a program that dlopens
libcuda.so.1, and the site configuration naming them (udiRoot.conf keys or a CDI spec).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.services.mpich_fixtures import DATA, build_squashfs_image, image_entries

SITE_RESOURCES = "/opt/shifter/site-resources"
GPU_BASE = f"{SITE_RESOURCES}/gpu"
UUIDS = ("GPU-11111111-2222-3333-4444-555555555555", "GPU-66666666-7777-8888-9999-000000000000")
NODES = {"nvidia0": (195, 0), "nvidia1": (195, 1), "nvidiactl": (195, 255),
         "nvidia-uvm": (509, 0)}  # fmt: skip
PROBE = "/app/gpuprobe"


def _gcc(*args: str) -> None:
    subprocess.run(["gcc", *args], check=True, capture_output=True)


class FakeDriver:
    """The driver tree under `root`: lib/, bin/, dev/ (real device nodes)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lib = root / "lib"
        self.bin = root / "bin"
        self.dev = root / "dev"
        for directory in (root, self.lib, self.bin, self.dev):
            directory.mkdir(mode=0o755, exist_ok=True)
            directory.chmod(0o755)
        _gcc("-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(self.lib / "libcuda.so.1"),
             str(DATA / "fake_libcuda.c"))  # fmt: skip
        _gcc("-shared", "-fPIC", "-Wl,-soname,libnvidia-ml.so.1", "-o",
             str(self.lib / "libnvidia-ml.so.1"), str(DATA / "fake_libnvidia_ml.c"))  # fmt: skip
        smi = self.bin / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\necho 'GPU 0: Fake GPU (UUID: {UUIDS[0]})'\n")
        smi.chmod(0o755)
        for name, (major, minor) in NODES.items():
            os.mknod(self.dev / name, 0o666 | 0o020000, os.makedev(major, minor))

    def node(self, name: str) -> str:
        return str(self.dev / name)

    def keys(self) -> tuple[str, ...]:
        """udiRoot.conf lines for this driver (the built-in lists)."""
        return (
            f"siteResources={SITE_RESOURCES}",
            f"gpuLibraries={self.lib / 'libcuda.so.1'} {self.lib / 'libnvidia-ml.so.1'}",
            f"gpuBinaries={self.bin / 'nvidia-smi'}",
            f"gpuDevices={self.node('nvidia0')} {self.node('nvidia1')}",
            f"gpuDeviceUuids={' '.join(UUIDS)}",
            f"gpuControlDevices={self.node('nvidiactl')} {self.node('nvidia-uvm')}",
        )

    def cdi_spec(self) -> dict[str, object]:
        """The same driver as nvidia-ctk would describe it (JSON form)."""

        def node(name: str) -> dict[str, str]:
            return {"path": f"/dev/{name}", "hostPath": self.node(name)}

        devices = [
            {"name": str(index), "containerEdits": {"deviceNodes": [node(f"nvidia{index}")]}}
            for index in range(2)
        ] + [
            {"name": uuid, "containerEdits": {"deviceNodes": [node(f"nvidia{index}")]}}
            for index, uuid in enumerate(UUIDS)
        ]
        mounts = [
            {"hostPath": str(self.lib / name), "containerPath": f"/usr/lib/x86_64-linux-gnu/{name}",
             "options": ["ro", "nosuid", "nodev", "bind"]}
            for name in ("libcuda.so.1", "libnvidia-ml.so.1")
        ] + [{"hostPath": str(self.bin / "nvidia-smi"), "containerPath": "/usr/bin/nvidia-smi",
              "options": ["ro", "nosuid", "nodev", "bind"]}]  # fmt: skip
        return {
            "cdiVersion": "0.5.0",
            "kind": "nvidia.com/gpu",
            "devices": devices,
            "containerEdits": {
                "deviceNodes": [node("nvidiactl"), node("nvidia-uvm")],
                "mounts": mounts,
                "env": ["NVIDIA_VISIBLE_DEVICES=void", "SHIFTER_TEST_CDI=1"],
                "hooks": [{"hookName": "createContainer", "path": "/usr/bin/nvidia-ctk"}],
            },
        }

    def write_cdi(self, path: Path, spec: object | None = None) -> Path:
        document = self.cdi_spec() if spec is None else spec
        if path.suffix == ".yaml":
            path.write_text("---\n# as nvidia-ctk writes it\n" + "".join(
                f"{line}\n" for line in block_yaml(document)))  # fmt: skip
        else:
            path.write_text(json.dumps(document))
        path.chmod(0o644)
        return path


def block_yaml(value: object, indent: int = 0) -> list[str]:
    """`value` in the block style CDI generators write: sequences at their key's indentation,
    digit-only strings quoted, other strings plain."""
    pad = " " * indent

    def scalar(text: object) -> str:
        return f'"{text}"' if str(text).isdigit() else str(text)

    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines += block_yaml(item, indent if isinstance(item, list) else indent + 2)
            else:
                lines.append(f"{pad}{key}: {scalar(item) if item or item == 0 else '[]'}")
    else:
        assert isinstance(value, list)
        for item in value:
            if isinstance(item, dict):
                inner = block_yaml(item, indent + 2)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return lines


def build_probe_image(image_path: Path, work: Path) -> str:
    """An image with PROBE (gpu_probe.c) and its C library; returns its id."""
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "gpuprobe"
    _gcc("-o", str(binary), str(DATA / "gpu_probe.c"))
    return build_squashfs_image(image_entries(binary, program=PROBE), image_path, work, "gpuprobe")
