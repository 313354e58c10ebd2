"""Proxies from the environment: http_proxy, no_proxy and all_proxy=socks5://.

The pure choice (`proxy_for`; the `no_proxy` rules are tested with `shifter.proxyenv`) is
checked first, then real pulls go through the forwarding proxy (as an http_proxy) and a
SOCKS5 relay, both on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shifter.engine.pull import pull_and_convert
from shifter.errors import ConfigError
from shifter.registry.proxies import proxy_for
from tests.service.test_pull_support import options, push
from tests.services.faultproxy import FaultProxy, Socks5Proxy
from tests.services.registries import RegistryEndpoint


def test_proxy_choice_by_scheme_and_fallback() -> None:
    environ = {"https_proxy": "proxy:3128", "all_proxy": "socks5://socks:1080"}
    assert proxy_for("https", "r.example.org", None, environ) == "http://proxy:3128"
    assert proxy_for("http", "r.example.org", None, environ) == "socks5://socks:1080"
    assert proxy_for("http", "r.example.org", None, {"HTTP_PROXY": "http://p:1"}) == "http://p:1"
    cgi = {"HTTP_PROXY": "http://attacker:1", "REQUEST_METHOD": "GET"}
    assert proxy_for("http", "r.example.org", None, cgi) is None
    assert proxy_for("https", "r.example.org", None, {}) is None
    with pytest.raises(ConfigError, match="unsupported proxy"):
        proxy_for("https", "r.example.org", None, {"https_proxy": "ftp://p:21"})


def test_pull_through_an_http_proxy(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    with FaultProxy("http://127.0.0.1:9") as forward:  # upstream unused: absolute URLs
        settings = options(tmp_path / "cache", environ={"http_proxy": forward.url})
        pulled = pull_and_convert(reference, tmp_path, options=settings)
        seen = forward.requests
    assert pulled.meta_path.is_file()
    assert len(seen) >= 4 and all(r.proxied for r in seen)
    assert {r.raw_path.split("/v2/")[0] for r in seen} == {f"http://{registry_anon.netloc}"}


def test_no_proxy_bypasses_the_proxy(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    with FaultProxy("http://127.0.0.1:9") as forward:
        environ = {"http_proxy": forward.url, "no_proxy": "localhost,127.0.0.1"}
        pull_and_convert(reference, tmp_path, options=options(tmp_path / "cache", environ=environ))
        assert forward.requests == []


@pytest.mark.parametrize("kind", ["anon", "tls"])
def test_pull_through_a_socks5_proxy(
    kind: str, request: pytest.FixtureRequest, repo_name: str, tmp_path: Path
) -> None:
    endpoint: RegistryEndpoint = request.getfixturevalue(f"registry_{kind}")
    push(endpoint, "busybox", repo_name)
    reference = f"{endpoint.netloc}/{repo_name}:v1"
    with Socks5Proxy() as socks:
        settings = options(
            tmp_path / "cache",
            insecure=kind == "anon",
            ca_file=str(endpoint.ca_file) if endpoint.ca_file else None,
            environ={"all_proxy": socks.url},
        )
        pulled = pull_and_convert(reference, tmp_path, options=settings)
        relayed = socks.connections
    assert pulled.meta_path.is_file()
    host, port = endpoint.netloc.split(":")
    assert relayed and set(relayed) == {(host, int(port))}
