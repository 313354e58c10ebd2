"""Multi-platform images: the platform picks the manifest, and the manifest is the id."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shifter.engine.pull import pull_and_convert
from shifter.ocibuild import catalog
from shifter.registry.errors import PlatformNotFoundError
from tests.service.test_pull_support import extract, options, push
from tests.services.registries import RegistryEndpoint

FLAVORS = ("multiarch", "multiarch-docker")


def _platform_manifests(name: str) -> dict[str, bytes]:
    """architecture -> the exact manifest bytes the index points at."""
    built = catalog.build(name)
    index = json.loads(built.top.data)
    by_digest = {manifest.digest: manifest.data for manifest in built.manifests}
    return {
        entry["platform"]["architecture"]: by_digest[entry["digest"]]
        for entry in index["manifests"]
    }


@pytest.mark.parametrize("name", FLAVORS)
def test_amd64_and_arm64_give_different_ids_and_contents(
    name: str, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built = push(registry_anon, name, repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    manifests = _platform_manifests(name)
    ids = {}
    for platform, arch in (("linux/amd64", "amd64"), ("linux/arm64/v8", "arm64")):
        dest = tmp_path / arch
        dest.mkdir()
        pulled = pull_and_convert(
            reference, dest, options=options(tmp_path / "cache", platform=platform)
        )
        ids[arch] = pulled.id
        assert pulled.id == hashlib.sha256(manifests[arch]).hexdigest()
        root = extract(pulled.image_path, tmp_path / f"root-{arch}")
        assert (root / "etc/arch").read_bytes() == f"{arch}\n".encode()
        sidecar = json.loads(pulled.sidecar_path.read_text())
        assert sidecar["index_digest"] == built.digest
        assert sidecar["platform"]["architecture"] == arch
    assert ids["amd64"] != ids["arm64"]
    assert built.digest.split(":")[1] not in ids.values(), "the id is never the index digest"


def test_default_variant_of_arm64_is_v8(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "multiarch", repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    without = pull_and_convert(
        reference, tmp_path, options=options(tmp_path / "cache", platform="linux/arm64")
    )
    assert without.id == hashlib.sha256(_platform_manifests("multiarch")["arm64"]).hexdigest()


@pytest.mark.parametrize("platform", ["linux/s390x", "linux/arm64/v7", "windows/amd64"])
def test_unknown_platform_lists_the_available_ones(
    platform: str, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "multiarch", repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    with pytest.raises(PlatformNotFoundError) as caught:
        pull_and_convert(
            reference, tmp_path, options=options(tmp_path / "cache", platform=platform)
        )
    message = str(caught.value)
    assert f"has no image for platform {platform}" in message
    assert message.endswith("available platforms: linux/amd64, linux/arm64/v8")
    assert caught.value.hint is not None and "--platform" in caught.value.hint
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]
