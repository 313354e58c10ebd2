"""The garbage collector during a real pull: on while layers download (the planner pauses it
only while it applies a layer), and on again after the pull, whether it succeeded, failed
while planning or failed while downloading. In the gateway a download can last minutes and
other pulls and requests share the process."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.convert import LayerError
from shifter.engine.progress import SilentProgress
from shifter.engine.pull import pull_and_convert
from shifter.ocibuild import catalog
from shifter.registry.errors import DigestMismatchError
from tests.service.test_pull_support import layer_digests, options, push
from tests.services.faultproxy import Fault, FaultProxy
from tests.services.registries import RegistryEndpoint

FAILING = [name for name in catalog.names() if catalog.expected(name).error is not None]


class CollectorWatch(SilentProgress):
    """A progress sink noting whether the collector is on each time bytes arrive."""

    def __init__(self) -> None:
        self.while_downloading: list[bool] = []

    def advance(self, nbytes: int) -> None:
        self.while_downloading.append(gc.isenabled())


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    assert gc.isenabled(), "the test run itself left the collector off"
    yield
    gc.enable()  # a failing test must not leave it off for the next


def test_the_collector_runs_during_the_download_and_after_the_pull(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "layered", repo_name)
    watch = CollectorWatch()
    pulled = pull_and_convert(
        f"{registry_anon.netloc}/{repo_name}:v1",
        tmp_path,
        options=options(tmp_path / "cache", progress=watch),
    )
    assert pulled.image_path.is_file()
    assert watch.while_downloading, "no download was reported"
    assert all(watch.while_downloading)
    assert gc.isenabled()


def test_the_catalog_has_an_image_whose_pull_fails_while_planning() -> None:
    # Otherwise the next test's parameter list is empty and pytest only skips it.
    assert FAILING


@pytest.mark.parametrize("name", FAILING[:1])
def test_the_collector_is_on_after_a_pull_that_fails_while_planning(
    name: str, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, name, repo_name)
    with pytest.raises(LayerError):
        pull_and_convert(
            f"{registry_anon.netloc}/{repo_name}:v1", tmp_path, options=options(tmp_path / "cache")
        )
    assert gc.isenabled()


def test_the_collector_is_on_after_a_pull_that_fails_while_downloading(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    built = push(registry_anon, "busybox", repo_name)
    with FaultProxy(registry_anon.url) as proxy:
        proxy.add(Fault("corrupt", path=layer_digests(built)[0], times=None))
        with pytest.raises(DigestMismatchError):
            pull_and_convert(
                f"{proxy.netloc}/{repo_name}:v1", tmp_path, options=options(tmp_path / "cache")
            )
    assert gc.isenabled()
