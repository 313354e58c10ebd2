"""The gateway's own disk: what it keeps on its host is its account's alone (the layer
cache with the layers of private images, the scratch directory and the SQLite store, also
when a site created them beforehand with its default umask, and the layers it writes from
then on); and a full scratch area fails a pull with that cause, not only an exit status."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_gateway_api import pull_until_done
from tests.service.test_transfer_support import mounted
from tests.services.gateway_fixtures import USER_A, Caller, GatewayEnv, running_app
from tests.services.registries import RegistryEndpoint


def _modes(top: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(top.stat().st_mode)}
    for path in top.rglob("*"):
        found[str(path.relative_to(top))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def test_cache_scratch_and_store_are_private_after_start_up(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    cache, scratch = gateway_env.root / "cache", gateway_env.expand_dir
    # As an older gateway or a site's umask left them.
    (cache / "sha256").mkdir(mode=0o755)
    (cache / "sha256" / ("0" * 64)).write_text("an old layer")
    (cache / "sha256" / ("0" * 64)).chmod(0o644)
    for directory in (cache, scratch, cache / "sha256"):
        directory.chmod(0o755)
    store = gateway_env.root / "gateway.sqlite"
    store.touch(mode=0o644)
    store.chmod(0o644)

    push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
    with running_app(gateway_env.config()) as client:
        for top in (cache, scratch):
            modes = _modes(top)
            assert modes["."] == 0o700 and modes.get("sha256", 0o700) == 0o700, modes
        assert _modes(cache)[f"sha256/{'0' * 64}"] == 0o600
        done = pull_until_done(client, caller, f"{repo_name}:v1", USER_A)
        assert done["status"] == "READY", done["status_message"]
    layers: dict[str, Any] = _modes(cache)
    assert all(mode & 0o077 == 0 for mode in layers.values()), layers
    assert len([name for name in layers if name.startswith("sha256/")]) >= 2
    for path in store.parent.glob("gateway.sqlite*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_a_full_scratch_area_is_named_as_the_cause(
    gateway_env: GatewayEnv, caller: Caller, registry_anon: RegistryEndpoint, repo_name: str,
    tmp_path: Path,
) -> None:
    push_image(catalog.build("layered"), registry_anon.url, repo_name, "v1")
    with mounted("tmpfs", tmp_path / "small", "size=64k") as small, running_app(
            gateway_env.config(ExpandDirectory=str(small))) as client:
        done = pull_until_done(client, caller, f"{repo_name}:v1", USER_A)
    assert done["status"] == "FAILURE"
    assert done["status_message"] == (
        "mksquashfs failed with exit status 1: Write failed because No space left on device "
        "(the image gateway's scratch or image space is full: its admins must free space, the "
        "pull can be retried then)")
