"""The cold launch's read-ahead of the command's file on a real squashfuse mount: the
launcher decompresses blocks from the file's end and stores them in the page cache
(runtime/image/fill.py) while squashfuse serves the front, and the command reads exactly
the image's bytes; an image the launcher cannot read itself is read by squashfuse alone."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator

import pytest

from shifter.image.meta import format_meta
from shifter.runtime.image.fill import fill_threads
from tests.services.runtime_fixtures import Site, image_id, output_of

STORED = "blocks read ahead were decompressed by the launcher"


def _busybox_md5(site: Site) -> str:
    return hashlib.md5((site.images.tree / "bin" / "busybox").read_bytes()).hexdigest()


def test_the_command_reads_the_images_bytes_half_of_them_stored_by_the_launcher(
    runtime_site: Site,
) -> None:
    # The command is busybox: its file is the one read ahead, then read whole.
    result = runtime_site.run("--verbose", f"--image={runtime_site.images.ref('main')}",
                              "busybox", "md5sum", "/bin/busybox")  # fmt: skip
    assert output_of(result).split()[0] == _busybox_md5(runtime_site)
    report = next(line for line in result.stderr.splitlines() if "container built" in line)
    if fill_threads() < 1:
        pytest.skip("one CPU: the read-ahead is squashfuse's alone")
    stored, blocks = report.split("(", 1)[1].split(" of ")[0], report.split(" of ")[1].split()[0]
    assert STORED in report and 0 < int(stored) <= int(blocks), report


@pytest.fixture
def image_without_exports(runtime_site: Site) -> Iterator[str]:
    """The main tree as an image without an export table (mksquashfs -no-exports)."""
    own = image_id("no-exports")
    path = runtime_site.images.path
    subprocess.run(["mksquashfs", str(runtime_site.images.tree), str(path / f"{own}.squashfs"),
                    "-noappend", "-all-root", "-no-xattrs", "-quiet", "-no-progress",
                    "-no-exports"], check=True, capture_output=True)  # fmt: skip
    os.chmod(path / f"{own}.squashfs", 0o644)
    (path / f"{own}.meta").write_text(format_meta("squashfs")[0])
    yield own
    for suffix in ("squashfs", "meta"):
        (path / f"{own}.{suffix}").unlink(missing_ok=True)


def test_without_an_export_table_squashfuse_reads_it_all(
    runtime_site: Site, image_without_exports: str
) -> None:
    result = runtime_site.run("--verbose", f"--image=id:{image_without_exports}",
                              "busybox", "md5sum", "/bin/busybox")  # fmt: skip
    assert output_of(result).split()[0] == _busybox_md5(runtime_site)
    assert "read ahead by squashfuse alone" in result.stderr, result.stderr[-2000:]
    assert STORED not in result.stderr
