"""A full or read-only cache or output directory: a clean error and no temporary files.

Each test mounts a 2 MiB (or read-only) tmpfs under tmp_path and unmounts it afterwards;
the image pulled holds a 3 MiB layer that does not compress.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shifter.convert import ImageBuildError
from shifter.engine.pull import PullError, pull_and_convert
from shifter.errors import ToolError
from shifter.registry.errors import BlobCacheError
from tests.service.test_pull_support import big_image, options, push, tmpfs
from tests.services.registries import RegistryEndpoint


@pytest.fixture
def big_reference(registry_anon: RegistryEndpoint, repo_name: str) -> str:
    push(registry_anon, "", repo_name, built=big_image())
    return f"{registry_anon.netloc}/{repo_name}:v1"


def all_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def test_full_cache_is_a_clean_error(big_reference: str, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with tmpfs(tmp_path / "cache") as cache:
        with pytest.raises(BlobCacheError, match="no space left") as caught:
            pull_and_convert(big_reference, images, options=options(cache))
        assert caught.value.hint is not None and "CacheDirectory" in caught.value.hint
        assert list((cache / "partial").iterdir()) == []
        # Only the small config blob made it; the layer left no trace.
        assert len(list((cache / "sha256").iterdir())) == 1
    assert list(images.iterdir()) == []


def test_full_output_directory_is_a_clean_error(big_reference: str, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "images") as images:
        # The converter reports the builder's own failure (mksquashfs: "No space left").
        with pytest.raises((ImageBuildError, ToolError)):
            pull_and_convert(big_reference, images, options=options(tmp_path / "cache"))
        assert all_files(images) == []
    assert list((tmp_path / "cache/partial").iterdir()) == []


def test_read_only_cache_is_a_clean_error(big_reference: str, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with (
        tmpfs(tmp_path / "cache", read_only=True) as cache,
        pytest.raises(BlobCacheError, match="Read-only file system"),
    ):
        pull_and_convert(big_reference, images, options=options(cache))
    assert list(images.iterdir()) == []


def test_read_only_output_directory_is_refused_before_downloading(
    big_reference: str, tmp_path: Path
) -> None:
    with (
        tmpfs(tmp_path / "images", read_only=True) as images,
        pytest.raises(PullError, match="is not writable"),
    ):
        pull_and_convert(big_reference, images, options=options(tmp_path / "cache"))
    assert not (tmp_path / "cache").exists(), "nothing was downloaded"
