"""Streaming: a pull never holds a blob in memory, whatever the layer size.

A 256 MiB layer that does not compress is pulled by the CLI in a subprocess; the peak
resident size of that process (from wait4) must stay under 150 MiB.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shifter.ocibuild.image import Flavor, built_image, single_image
from shifter.ocibuild.layer import Compression, File, build_layer
from tests.service.test_pull_support import push
from tests.services.registries import RegistryEndpoint

CLI = Path(sys.executable).parent / "shifter-imagegw"
LAYER_BYTES = 256 << 20
RSS_LIMIT_KIB = 150 << 10
# Measured by a small launcher rather than from here: a child's peak RSS includes the
# memory of the process that forked it until exec (Linux keeps the old mm's high-water
# mark), and this test holds the whole layer in memory to push it.
MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
print(f"maxrss_kib={usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_pulling_a_large_layer_keeps_memory_flat(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    layer = build_layer([File("large.bin", os.urandom(LAYER_BYTES))], Compression.NONE)
    push(
        registry_anon, "", repo_name, built=built_image("large", single_image([layer]), Flavor.OCI)
    )
    del layer
    argv = [str(CLI), "convert", "--insecure", "--cache", str(tmp_path / "cache")]
    argv += [f"{registry_anon.netloc}/{repo_name}:v1", str(tmp_path / "out")]
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.run(
            [sys.executable, "-c", MEASURE, *argv], stdout=stdout, stderr=stderr, check=False
        )
    stdout_text, stderr_text = out.read_text(), err.read_text()
    peak_kib = int(stderr_text.splitlines()[-1].removeprefix("maxrss_kib="))
    assert process.returncode == 0, stderr_text
    image_id = stdout_text.splitlines()[-1]
    image = tmp_path / "out" / f"{image_id}.squashfs"
    assert image.stat().st_size > LAYER_BYTES
    assert peak_kib < RSS_LIMIT_KIB, f"peak RSS {peak_kib >> 10} MiB"
