"""Bad input, each with a test: a fault-injecting proxy in front of the real registry.

The proxy (tests/services/faultproxy.py) forwards to the anonymous registry and breaks
exactly what a test asks for. Every failure must be a clear error, and must leave nothing
in the layer cache or the output directory (a partial download is kept only when it is
worth resuming).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.engine.pull import PulledImage, PullError, pull_and_convert
from shifter.ocibuild import catalog
from shifter.registry.errors import (
    AccessDeniedError,
    DigestMismatchError,
    ImageNotFoundError,
    ManifestError,
    RegistryError,
)
from shifter.registry.manifest import SCHEMA1_MESSAGE
from tests.service.test_pull_support import cache_state, layer_digests, options, push
from tests.services.faultproxy import BLOBS, MANIFESTS, Fault, FaultProxy
from tests.services.registries import RegistryEndpoint


@pytest.fixture
def proxy(registry_anon: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anon.url) as running:
        yield running


@pytest.fixture
def busybox_repo(registry_anon: RegistryEndpoint, repo_name: str) -> str:
    push(registry_anon, "busybox", repo_name)
    return repo_name


def pull_via(proxy: FaultProxy, repository: str, tmp_path: Path, tag: str = "v1") -> PulledImage:
    dest = tmp_path / "images"
    dest.mkdir(exist_ok=True)
    reference = f"{proxy.netloc}/{repository}:{tag}"
    return pull_and_convert(reference, dest, options=options(tmp_path / "cache"))


def assert_nothing_left(tmp_path: Path, layer: str) -> None:
    blobs, partials = cache_state(tmp_path / "cache")
    assert layer.split(":")[1] not in blobs
    assert partials == []
    assert list((tmp_path / "images").iterdir()) == []


BUSYBOX_LAYER = layer_digests(catalog.build("busybox"))[0]


def test_digest_mismatch_fails_and_leaves_nothing_in_the_cache(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("corrupt", path=BUSYBOX_LAYER, times=None))
    with pytest.raises(DigestMismatchError, match="does not match its digest"):
        pull_via(proxy, busybox_repo, tmp_path)
    assert_nothing_left(tmp_path, BUSYBOX_LAYER)


@pytest.mark.parametrize(("image", "nth"), [("busybox", 1), ("multiarch", 1), ("multiarch", 2)])
def test_manifest_digest_mismatch_fails_before_anything_is_downloaded(
    image: str,
    nth: int,
    proxy: FaultProxy,
    registry_anon: RegistryEndpoint,
    repo_name: str,
    tmp_path: Path,
) -> None:
    """The tag's manifest (or index), or the platform manifest fetched by digest, altered."""
    push(registry_anon, image, repo_name)
    if nth == 2:
        proxy.add(Fault("delay", path=MANIFESTS, times=1))  # lets the index through
    proxy.add(Fault("corrupt", path=MANIFESTS, times=1))
    with pytest.raises(DigestMismatchError, match=r"the manifest of .* does not match its digest"):
        pull_via(proxy, repo_name, tmp_path)
    assert proxy.count(BLOBS) == 0
    assert list((tmp_path / "images").iterdir()) == []


def test_blob_truncated_once_is_completed_with_a_range_request(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("truncate", path=BUSYBOX_LAYER, after_bytes=300_000))
    pulled = pull_via(proxy, busybox_repo, tmp_path)
    ranges = [r.range for r in proxy.requests if BUSYBOX_LAYER in r.path]
    assert ranges == [None, "bytes=300000-"]
    assert pulled.image_path.is_file()
    assert cache_state(tmp_path / "cache")[1] == []


def test_blob_always_truncated_fails_cleanly(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("truncate", path=BUSYBOX_LAYER, after_bytes=0, times=None))
    with pytest.raises(RegistryError, match=r"giving up .* incomplete body \(0 of"):
        pull_via(proxy, busybox_repo, tmp_path)
    assert_nothing_left(tmp_path, BUSYBOX_LAYER)


def test_connection_dropped_mid_blob_resumes_with_range(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("drop", path=BUSYBOX_LAYER, after_bytes=500_000))
    pull_via(proxy, busybox_repo, tmp_path)
    requests = [r for r in proxy.requests if BUSYBOX_LAYER in r.path]
    assert [r.range for r in requests] == [None, "bytes=500000-"]
    assert requests[1].status == 206


def test_dropped_download_is_resumed_by_the_next_pull(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("drop", path=BUSYBOX_LAYER, after_bytes=400_000))
    proxy.add(Fault("status", path=BUSYBOX_LAYER, status=503, times=None))
    with pytest.raises(RegistryError, match="giving up"):
        pull_via(proxy, busybox_repo, tmp_path)
    partial = tmp_path / "cache/partial" / BUSYBOX_LAYER.split(":")[1]
    assert partial.stat().st_size == 400_000, "the bytes that arrived are kept for resume"
    proxy.clear()
    pull_via(proxy, busybox_repo, tmp_path)
    assert [r.range for r in proxy.requests if BUSYBOX_LAYER in r.path][-1] == "bytes=400000-"
    assert not partial.exists()


def test_server_errors_for_a_while_are_retried(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("status", path=MANIFESTS, status=500, times=2))
    proxy.add(Fault("status", path=BLOBS, status=502, times=2))
    proxy.add(
        Fault("status", path=BUSYBOX_LAYER, status=429, times=1, headers={"Retry-After": "0"})
    )
    pulled = pull_via(proxy, busybox_repo, tmp_path)
    statuses = [r.status for r in proxy.requests]
    assert statuses.count(500) == 2 and statuses.count(502) == 2 and statuses.count(429) == 1
    assert pulled.meta_path.is_file()


def test_server_errors_for_good_fail_within_the_retry_budget(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("status", path=BUSYBOX_LAYER, status=500, times=None))
    started = time.monotonic()
    with pytest.raises(RegistryError, match=r"giving up on downloading blob .* after 4 attempts"):
        pull_via(proxy, busybox_repo, tmp_path)
    assert time.monotonic() - started < 10
    assert proxy.count(BUSYBOX_LAYER) == 4
    assert_nothing_left(tmp_path, BUSYBOX_LAYER)


def test_missing_tag_is_image_not_found(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    with pytest.raises(ImageNotFoundError) as caught:
        pull_via(proxy, busybox_repo, tmp_path, tag="no-such-tag")
    assert str(caught.value) == f"image not found: {proxy.netloc}/{busybox_repo}:no-such-tag"


@pytest.mark.parametrize("status", [401, 403])
def test_refusal_is_access_denied_with_the_registry_message(
    status: int, proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("status", path=MANIFESTS, status=status, times=None))
    with pytest.raises(AccessDeniedError) as caught:
        pull_via(proxy, busybox_repo, tmp_path)
    assert str(caught.value) == (
        f"access denied: {proxy.netloc}/{busybox_repo}:v1: FAULT: injected by the test proxy"
    )


def test_unknown_manifest_media_type_is_refused(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    body = b'{"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}'
    proxy.add(Fault("replace", path=MANIFESTS, body=body, content_type="application/json"))
    with pytest.raises(
        ManifestError, match=re.escape("'application/vnd.example.thing+json', which is not")
    ):
        pull_via(proxy, busybox_repo, tmp_path)


def test_schema1_manifest_is_refused_with_advice(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    body = json.dumps(
        {"schemaVersion": 1, "name": busybox_repo, "tag": "v1", "fsLayers": [], "history": []}
    ).encode()
    content_type = "application/vnd.docker.distribution.manifest.v1+prettyjws"
    proxy.add(Fault("replace", path=MANIFESTS, body=body, content_type=content_type))
    with pytest.raises(ManifestError) as caught:
        pull_via(proxy, busybox_repo, tmp_path)
    assert str(caught.value).endswith(SCHEMA1_MESSAGE)


def test_artifact_that_is_not_a_container_image_is_refused(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    from shifter.ocibuild.image import Blob, BuiltImage, Flavor, to_json

    config = Blob("application/vnd.example.config.v1+json", b"{}")
    layer = Blob("application/vnd.example.data.v1", b"not a tar")
    manifest = Blob(
        Flavor.OCI.manifest_type,
        to_json(
            {
                "schemaVersion": 2,
                "mediaType": Flavor.OCI.manifest_type,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            }
        ),
    )
    built = BuiltImage("artifact", manifest, (), (config, layer), Flavor.OCI)
    push(registry_anon, "", repo_name, built=built)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    with pytest.raises(ManifestError, match="is not a container image"):
        pull_and_convert(reference, tmp_path, options=options(tmp_path / "cache"))


def test_blob_redirected_to_another_path_is_followed(
    proxy: FaultProxy, busybox_repo: str, tmp_path: Path
) -> None:
    proxy.add(Fault("redirect", path=BLOBS, target=proxy.url, times=None))
    pulled = pull_via(proxy, busybox_repo, tmp_path)
    redirected = [r for r in proxy.requests if r.raw_path.startswith("/_redirected/")]
    assert {r.path for r in redirected} >= {f"/v2/{busybox_repo}/blobs/{BUSYBOX_LAYER}"}
    assert pulled.image_path.is_file()


def test_output_directory_must_exist(proxy: FaultProxy, busybox_repo: str, tmp_path: Path) -> None:
    reference = f"{proxy.netloc}/{busybox_repo}:v1"
    with pytest.raises(PullError, match="does not exist"):
        pull_and_convert(reference, tmp_path / "missing", options=options(tmp_path / "cache"))
    assert proxy.requests == []
