"""The engine's `reuse` hook: a caller that already holds `<id>.<fmt>` elsewhere (the
gateway's imageDir) is asked with the id before any layer is fetched, and a yes means only
the config blob is fetched and only `.meta` and the sidecar are written.

Blob GETs are counted by a forwarding proxy in front of the anonymous registry, with a cold
layer cache, so a pull that fetched layers would show it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.engine.pull import PulledImage, pull_and_convert
from shifter.image.meta import read_meta
from shifter.ocibuild.image import BuiltImage
from tests.service.test_pull_support import layer_digests, options, push
from tests.services.faultproxy import BLOBS, FaultProxy
from tests.services.registries import RegistryEndpoint


@pytest.fixture
def proxy(registry_anon: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anon.url) as running:
        yield running


class Hook:
    """Answers `answer` and remembers each id it was asked about, with how many blob
    GETs the proxy had seen at that moment."""

    def __init__(self, proxy: FaultProxy, answer: bool) -> None:
        self.proxy, self.answer = proxy, answer
        self.asked: list[tuple[str, int]] = []

    def __call__(self, image_id: str) -> bool:
        self.asked.append((image_id, self.proxy.count(BLOBS)))
        return self.answer


def pull(proxy: FaultProxy, repository: str, dest: Path, cache: Path, hook: Hook) -> PulledImage:
    dest.mkdir(parents=True, exist_ok=True)
    return pull_and_convert(f"{proxy.netloc}/{repository}:v1", dest,
                            options=options(cache, reuse=hook), user_acl=[4242])


def cold_pull(proxy: FaultProxy, registry: RegistryEndpoint, repository: str, tmp_path: Path,
              answer: bool) -> tuple[BuiltImage, PulledImage]:
    """Push busybox, pull it with a cold cache and a hook answering `answer`, and check the
    hook was asked about the pulled id once, before any blob was fetched."""
    built = push(registry, "busybox", repository)
    hook = Hook(proxy, answer)
    pulled = pull(proxy, repository, tmp_path / "out", tmp_path / "cache", hook)
    assert hook.asked == [(pulled.id, 0)]  # the config blob included
    return built, pulled


def test_a_yes_writes_only_the_meta_and_sidecar(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built, pulled = cold_pull(proxy, registry_anon, repo_name, tmp_path, True)
    assert pulled.reused and pulled.image_elsewhere
    assert not pulled.image_path.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{pulled.id}.json", f"{pulled.id}.meta"]
    meta = read_meta(str(pulled.meta_path))
    assert (meta.format, meta.user_acl) == ("squashfs", (4242,))
    assert meta.entrypoint == ("/bin/echo", "shifter-test-entrypoint")
    document = json.loads(pulled.sidecar_path.read_text())
    assert (document["id"], document["config_digest"]) == (pulled.id, pulled.config_digest)
    assert document["conversion"]["skipped"] is None  # "converted earlier"
    # Only the config blob was fetched; no layer.
    assert proxy.count(BLOBS) == 1 == proxy.count(pulled.config_digest)
    for layer in layer_digests(built):
        assert proxy.count(layer) == 0


def test_a_no_converts_as_usual(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built, pulled = cold_pull(proxy, registry_anon, repo_name, tmp_path, False)
    assert not pulled.reused and not pulled.image_elsewhere
    with open(pulled.image_path, "rb") as image:
        assert image.read(4) == b"hsqs"
    for layer in layer_digests(built):
        assert proxy.count(layer) == 1


def test_an_image_already_in_the_destination_is_not_asked_about(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    dest, cache = tmp_path / "out", tmp_path / "cache"
    first = pull(proxy, repo_name, dest, cache, Hook(proxy, False))
    hook = Hook(proxy, True)
    warm = pull(proxy, repo_name, dest, cache, hook)
    assert hook.asked == []  # the standalone warm path, as before
    assert warm.reused and not warm.image_elsewhere
    assert warm.image_path.stat().st_ino == first.image_path.stat().st_ino
