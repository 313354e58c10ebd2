"""The shared layer cache and re-pulls: each blob downloaded once, whoever asks for it.

Blob GETs are counted by a forwarding proxy in front of the anonymous registry. Concurrent
pulls run in threads and in separate processes (the CLI), sharing one cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.engine.pull import PulledImage, pull_and_convert
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from tests.service.test_pull_support import (
    big_image,
    cache_state,
    check_tree,
    extract,
    layer_digests,
    options,
    push,
)
from tests.services.faultproxy import BLOBS, Fault, FaultProxy
from tests.services.registries import RegistryEndpoint

CLI = Path(sys.executable).parent / "shifter-imagegw"


@pytest.fixture
def proxy(registry_anon: RegistryEndpoint) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anon.url) as running:
        yield running


def pull(proxy: FaultProxy, repository: str, dest: Path, cache: Path, **kw: object) -> PulledImage:
    dest.mkdir(parents=True, exist_ok=True)
    reference = f"{proxy.netloc}/{repository}:v1"
    return pull_and_convert(reference, dest, options=options(cache), **kw)  # type: ignore[arg-type]


def assert_cache_intact(cache: Path) -> None:
    blobs, partials = cache_state(cache)
    assert partials == []
    for name in blobs:
        digest = hashlib.sha256((cache / "sha256" / name).read_bytes()).hexdigest()
        assert digest == name, f"cached blob {name} is corrupt"


def test_a_layer_shared_by_two_images_is_downloaded_once(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, make_repo_name: object, tmp_path: Path
) -> None:
    first, second = make_repo_name(), make_repo_name()  # type: ignore[operator]
    busybox = push(registry_anon, "busybox", first)
    other = push(registry_anon, "compression-gzip", second)
    shared = layer_digests(busybox)[0]
    assert shared in layer_digests(other)
    cache = tmp_path / "cache"
    pull(proxy, first, tmp_path / "a", cache)
    pull(proxy, second, tmp_path / "b", cache)
    assert proxy.count(shared) == 1
    for digest in layer_digests(other):
        assert proxy.count(digest) == 1
    assert_cache_intact(cache)


def test_warm_repull_reuses_the_image_without_downloading(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    cache, dest = tmp_path / "cache", tmp_path / "images"
    cold = pull(proxy, repo_name, dest, cache)
    built_at = cold.image_path.stat().st_mtime_ns
    blob_gets = proxy.count(BLOBS)
    started = time.monotonic()
    warm = pull(proxy, repo_name, dest, cache)
    elapsed = time.monotonic() - started
    assert warm.reused and not cold.reused
    assert warm.id == cold.id
    assert elapsed < 1.0, f"warm re-pull took {elapsed:.2f} s"
    assert proxy.count(BLOBS) == blob_gets, "a warm re-pull downloads nothing"
    assert warm.image_path.stat().st_mtime_ns == built_at, "the image was not rebuilt"


def test_repull_as_private_rewrites_the_meta_file_and_modes(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    cache, dest = tmp_path / "cache", tmp_path / "images"
    public = pull(proxy, repo_name, dest, cache)
    assert not read_meta(str(public.meta_path)).restricted
    built_at = public.image_path.stat().st_mtime_ns
    private = pull_and_convert(
        f"{proxy.netloc}/{repo_name}:v1",
        dest,
        options=options(cache, mode=0o600),
        user_acl=[4242],
        group_acl=[77],
    )
    meta = read_meta(str(private.meta_path))
    assert private.reused
    assert (meta.user_acl, meta.group_acl) == ((4242,), (77,))
    assert private.image_path.stat().st_mtime_ns == built_at
    for path in (private.image_path, private.meta_path, private.sidecar_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_damaged_cached_blob_is_downloaded_again(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built = push(registry_anon, "busybox", repo_name)
    layer = layer_digests(built)[0]
    cache = tmp_path / "cache"
    pull(proxy, repo_name, tmp_path / "a", cache)
    blob = cache / "sha256" / layer.split(":")[1]
    blob.write_bytes(blob.read_bytes()[:1000])  # a cache damaged outside our control
    pull(proxy, repo_name, tmp_path / "b", cache)
    assert proxy.count(layer) == 2
    assert_cache_intact(cache)


@pytest.mark.parametrize("damaged", [False, True], ids=["resumed", "started-over"])
def test_a_partial_download_left_by_an_earlier_pull_gives_the_right_image(
    proxy: FaultProxy,
    registry_anon: RegistryEndpoint,
    repo_name: str,
    tmp_path: Path,
    damaged: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The layers are planned from the bytes as they download; a resumed download feeds the
    bytes it reads back from the partial file, and one that must start over (the partial
    file was damaged) has its headers read from the finished file instead."""
    built = push(registry_anon, "layered", repo_name)
    layer = layer_digests(built)[0]
    blobs = {blob.digest: blob.data for blob in built.blobs}
    cache = tmp_path / "cache"
    (cache / "partial").mkdir(parents=True)
    start = blobs[layer][:3000]
    (cache / "partial" / layer.split(":")[1]).write_bytes(bytes(3000) if damaged else start)
    caplog.set_level(logging.DEBUG, logger="shifter.engine.layerplan")
    pulled = pull(proxy, repo_name, tmp_path / "images", cache)
    how = "reading its headers from the layer cache" if damaged else "read while it downloaded"
    assert any(layer in m and how in m for m in caplog.messages)
    ranges = [r.range for r in proxy.requests if layer in r.path]
    assert ranges == (["bytes=3000-", None] if damaged else ["bytes=3000-"])
    root = extract(pulled.image_path, tmp_path / "tree")
    check_tree(pulled.image_path, root, catalog.expected("layered"), owners_kept=False)
    assert_cache_intact(cache)


def test_concurrent_pulls_in_threads_share_each_download(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built = push(registry_anon, "", repo_name, built=big_image(seed=11))
    proxy.add(Fault("delay", path=BLOBS, delay_s=0.3, times=None))
    cache = tmp_path / "cache"
    results: list[PulledImage] = []
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            results.append(pull(proxy, repo_name, tmp_path / f"dest{number}", cache))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len({pulled.id for pulled in results}) == 1 and len(results) == 3
    assert proxy.count(layer_digests(built)[0]) == 1
    assert_cache_intact(cache)


def test_concurrent_pulls_in_two_processes_both_succeed(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built = push(registry_anon, "", repo_name, built=big_image(seed=12))
    proxy.add(Fault("delay", path=BLOBS, delay_s=0.5, times=None))
    cache, dest = tmp_path / "cache", tmp_path / "images"
    argv = [str(CLI), "convert", "--insecure", "--cache", str(cache)]
    argv += [f"{proxy.netloc}/{repo_name}:v1", str(dest)]
    environ = {**os.environ, "no_proxy": "*"}
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
    ids = {stdout.decode().splitlines()[-1] for stdout, _ in outputs}
    assert len(ids) == 1
    image_id = ids.pop()
    assert sorted(p.name for p in dest.iterdir()) == [
        f"{image_id}.json",
        f"{image_id}.meta",
        f"{image_id}.squashfs",
    ]
    assert proxy.count(layer_digests(built)[0]) == 1, "the second process waited, not fetched"
    assert_cache_intact(cache)


def test_catalog_busybox_is_identical_whoever_pulls_it(
    proxy: FaultProxy, registry_anon: RegistryEndpoint, make_repo_name: object, tmp_path: Path
) -> None:
    """The same image bytes under two repositories give the same id and image file."""
    first, second = make_repo_name(), make_repo_name()  # type: ignore[operator]
    for repository in (first, second):
        push(registry_anon, "busybox", repository)
    a = pull(proxy, first, tmp_path / "a", tmp_path / "cache")
    b = pull(proxy, second, tmp_path / "b", tmp_path / "cache")
    assert a.id == b.id == catalog.build("busybox").digest.split(":")[1]
    assert a.image_path.read_bytes() == b.image_path.read_bytes()
