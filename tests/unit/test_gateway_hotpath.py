"""Which requests the gateway's hot path (plain ASGI lookup and pull) takes, and which it
leaves to FastAPI: it must split a path exactly as the `/{system}/{imgtype}/{tag:path}/`
route does, or leave it alone."""

from __future__ import annotations

import pytest

from shifter.gateway.hotpath import LIST, LOOKUP, PULL, match


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/api/lookup/sys/docker/ubuntu:22.04/", (LOOKUP, "sys", "docker", "ubuntu:22.04")),
        ("POST", "/api/pull/sys/docker/org/repo:tag/", (PULL, "sys", "docker", "org/repo:tag")),
        ("GET", "/api/lookup/sys/docker/reg.io:5000/a/b:c/",
         (LOOKUP, "sys", "docker", "reg.io:5000/a/b:c")),
        ("GET", "/api/lookup/sys/docker/a//b:1/", (LOOKUP, "sys", "docker", "a//b:1")),
        ("GET", "/api/lookup/sys/docker/a\tb:1/", (LOOKUP, "sys", "docker", "a\tb:1")),
        ("GET", "/api/list/sys/", (LIST, "sys", "", "")),
    ],
)
def test_lookup_and_pull_paths_are_split_like_the_route(
    method: str, path: str, expected: tuple[object, ...]
) -> None:
    assert match(method, path) == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/lookup/sys/docker/a:1/"),  # wrong method: FastAPI answers 405
        ("GET", "/api/pull/sys/docker/a:1/"),
        ("GET", "/api/lookup/sys/docker/a:1"),  # no trailing slash: FastAPI redirects
        ("GET", "/api/lookup/sys/docker//"),  # empty tag
        ("GET", "/api/lookup//docker/a:1/"),
        ("GET", "/api/lookup/sys//a:1/"),
        ("GET", "/api/lookup/sys/docker/"),
        ("GET", "/api/lookup/sys/docker/a\nforged:1/"),  # the route does not match it either
        ("POST", "/api/list/sys/"),
        ("GET", "/api/list/sys"),
        ("GET", "/api/list//"),
        ("GET", "/api/list/sys/more/"),
        ("GET", "/api/lookupx/sys/docker/a:1/"),
        ("POST", "/api/doimport/sys/custom/a/"),
    ],
)
def test_anything_else_goes_to_fastapi(method: str, path: str) -> None:
    assert match(method, path) is None
