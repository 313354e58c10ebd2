"""The `shifter` launch path's import budget, pinned by module rather than by milliseconds.

Every `shifter` run pays for what it imports before it execs the command
(`docs/performance.md`, "Launch-path imports"). A fresh isolated interpreter
(`python -I -S -X importtime`, the package found through `sys.path` only) does what a
launch does up to the container: import the command, load udiRoot.conf, choose and find the
image, parse volumes, then import the rest of the launcher. None of the modules below may
load on the way; the failure names the chain of imports that brought one in.

`re` is allowed only when a size has to be parsed (`perNodeCacheSizeLimit`, a perNodeCache
volume), so the configuration here has none. `enum` is not listed: `signal`, `shifter.sys`
and `ImageType` need it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN = (
    "dataclasses",
    "inspect",
    "typing",
    "re",
    "ast",
    "tokenize",
    "argparse",
    "logging",
    "json",
    "http.client",
    "socket",
    "subprocess",
    "pathlib",
)
IMAGE_ID = "0123456789abcdef" * 4
CONFIG = """\
udiMount=/var/udiMount
loopMount=/var/udiLoopMount
imagePath={images}
rootfsType=tmpfs
populateEtcDynamically=1
system=cluster
imageGateway=http://imagegw:5000
siteFs=/home:/home;/scratch:/scratch:rec:slave
siteEnv=SHIFTER_RUNTIME=1
siteEnvAppend=PATH=/opt/udiImage/bin
module_mpich_siteFs=/opt/mpich:/opt/mpich
module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/mpich/lib
defaultModules=mpich
"""
META = "FORMAT: squashfs\nENTRY: ['/bin/sh', '-c']\nCMD: ['echo', 'hi']\nENV: PATH=/usr/bin:/bin\n"

UP_TO_IMAGE = """
import sys
sys.path.insert(0, {src!r})
import shifter.cli.shifter
from shifter.runtime.config.load import load_udiroot_config
from shifter.runtime.image.source import find_image
from shifter.runtime.request.selection import choose_image
from shifter.runtime.volumes.spec import parse_volume_specs

config = load_udiroot_config({config!r}, require_root_owned=False)
for request in ("docker:quay.io/org/app:1.0@sha256:" + "a" * 64, "custom:x:1", "local:/srv"):
    choose_image(request, {{}}, config.default_image_type)
choice = choose_image(None, {{"SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": {image_id!r}}}, None)
find_image(choice.descriptor, config, environ={{}})
parse_volume_specs("/a:/b:ro;/c:/d:rec:private")
"""
WHOLE_LAUNCHER = UP_TO_IMAGE + "import shifter.runtime.launch\n"
# A cold launch imports these only once its image server runs (launch.py's order, step 4):
# they load while squashfuse reads the command ahead, off the launch's critical path.
# (Importing `shifter.runtime.launch` must not bring them in.)
AFTER_THE_MOUNT = (
    "shifter.runtime.rootfs.build",
    "shifter.runtime.start",
    "shifter.runtime.identity.privileges",
    "shifter.runtime.volumes.policy",
    "shifter.runtime.rootfs.etc",  # without etcPath (whose owner is checked on the host)
    "shifter.runtime.site.gpu",  # without GPUs configured
)


def _imports(code: str) -> list[tuple[int, str]]:
    """(depth, module) of every import, in the order -X importtime reports them."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or line.endswith("imported package"):
            continue
        name = line.rsplit("|", 1)[1]
        found.append(((len(name) - len(name.lstrip())) // 2, name.strip()))
    return found


def _chain(imports: list[tuple[int, str]], index: int) -> str:
    """`module <- its importer <- ...`: importtime lists a module before the one importing it."""
    depth, name = imports[index]
    chain = [name]
    for later_depth, later in imports[index + 1 :]:
        if later_depth < depth:
            chain.append(later)
            depth = later_depth
    return " <- ".join(chain)


def _forbidden_in(code: str) -> list[str]:
    imports = _imports(code)
    names = [name for _, name in imports]
    assert "shifter.runtime.config.load" in names  # the run did get through the launch steps
    return [_chain(imports, i) for i, (_, name) in enumerate(imports) if name in FORBIDDEN]


@pytest.fixture
def site(tmp_path: Path) -> dict[str, str]:
    images = tmp_path / "images"
    images.mkdir()
    (images / f"{IMAGE_ID}.meta").write_text(META)
    config = tmp_path / "udiRoot.conf"
    config.write_text(CONFIG.format(images=images))
    return {"src": str(SRC), "config": str(config), "image_id": IMAGE_ID}


def test_config_and_image_selection_import_nothing_heavy(site: dict[str, str]) -> None:
    assert _forbidden_in(UP_TO_IMAGE.format(**site)) == []


def test_the_whole_launcher_imports_nothing_heavy(site: dict[str, str]) -> None:
    code = WHOLE_LAUNCHER.format(**site)
    assert "shifter.runtime.launch" in [name for _, name in _imports(code)]
    assert _forbidden_in(code) == []


def test_the_launcher_leaves_for_after_the_mount_what_the_mount_does_not_need(
    site: dict[str, str],
) -> None:
    names = [name for _, name in _imports(WHOLE_LAUNCHER.format(**site))]
    assert "shifter.runtime.launch" in names
    assert [name for name in AFTER_THE_MOUNT if name in names] == []


def test_a_forbidden_import_is_reported_with_its_importers(site: dict[str, str]) -> None:
    found = _forbidden_in(UP_TO_IMAGE.format(**site) + "import shifter.registry.blobcache\n")
    assert "logging <- shifter.registry.blobcache" in found


def test_a_userhook_imports_neither_subprocess_nor_logging(site: dict[str, str]) -> None:
    # Userhooks make the launcher import what starts them (start.prepare): proc.run_light
    # forks and execs without subprocess; logging is imported only by processes using it.
    code = UP_TO_IMAGE.format(**site) + "import shifter.proc, shifter.runtime.site.hooks\n"
    assert _forbidden_in(code) == []
