"""Proxies named by the environment: the `no_proxy` rules and the choice of variable, shared
by the registry client and the gateway client (each adds the proxy schemes it can speak)."""

from __future__ import annotations

import pytest

from shifter.proxyenv import bypasses_proxy, proxy_in_environ

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("registry.example.org", 443, "example.org", True),
        ("example.org", 443, "example.org", True),
        ("example.org", 443, ".example.org", True),  # httpx alone would proxy this one
        ("registry.example.org", 443, ".example.org", True),
        ("registry.example.org", 443, "*.example.org", True),
        ("registry.example.org.", 443, "example.org", True),
        ("badexample.org", 443, "example.org", False),
        ("example.org.evil.net", 443, "example.org", False),
        ("REGISTRY.Example.ORG", 443, "example.org", True),
        ("registry.example.org", 443, "other.org, example.org", True),
        ("registry.example.org", 443, "other.org example.org", True),
        ("registry.example.org", 5000, "registry.example.org:5000", True),
        ("registry.example.org", 443, "registry.example.org:5000", False),
        ("registry.example.org", None, "registry.example.org:5000", False),
        ("10.1.2.3", 443, "10.0.0.0/8", True),  # httpx alone matches no CIDR
        ("11.1.2.3", 443, "10.0.0.0/8", False),
        ("10.1.2.3", 443, "0.0.0.0/0", True),
        ("registry.example.org", 443, "10.0.0.0/8", False),
        ("127.0.0.1", 5000, "127.0.0.1", True),
        ("127.0.0.1", 5000, "127.0.0.1:5000", True),
        ("127.0.0.1", 443, "127.0.0.1:5000", False),
        ("10.0.0.1", 443, "0.0.1", False),  # an address is not a name: no suffix match
        ("localhost", 443, "127.0.0.1", False),
        ("::1", 443, "::1", True),
        ("::1", 443, "[::1]:443", True),
        ("[::1]", 443, "::1", True),
        ("::1", 5000, "[::1]:443", False),
        ("fd00::5", 443, "fd00::/8", True),
        ("anything.at.all", 80, "*", True),
        ("registry.example.org", 443, "", False),
        ("registry.example.org", 443, " , ,", False),
        ("registry.example.org", 443, ".", False),
    ],
)
def test_no_proxy_rules(host: str, port: int | None, no_proxy: str, bypass: bool) -> None:
    assert bypasses_proxy(host, port, no_proxy) is bypass


def test_the_scheme_variable_then_all_proxy_lower_case_first() -> None:
    environ = {"https_proxy": "proxy:3128", "HTTPS_PROXY": "http://upper:1",
               "ALL_PROXY": "socks5://socks:1080"}
    assert proxy_in_environ("https", "r.example.org", 443, environ,
                            upper_http_proxy=True) == "http://proxy:3128"
    assert proxy_in_environ("http", "r.example.org", 80, environ,
                            upper_http_proxy=True) == "socks5://socks:1080"
    assert proxy_in_environ("https", "r.example.org", 443, {"HTTPS_PROXY": " http://u:1 "},
                            upper_http_proxy=False) == "http://u:1"
    assert proxy_in_environ("https", "r.example.org", 443, {}, upper_http_proxy=True) is None


def test_upper_case_http_proxy_counts_only_when_the_caller_says_so() -> None:
    environ = {"HTTP_PROXY": "http://p:1"}
    assert proxy_in_environ("http", "r.example.org", 80, environ,
                            upper_http_proxy=True) == "http://p:1"
    assert proxy_in_environ("http", "r.example.org", 80, environ, upper_http_proxy=False) is None


def test_no_proxy_wins_over_every_proxy_variable() -> None:
    environ = {"http_proxy": "p:1", "all_proxy": "p:2", "NO_PROXY": "example.org"}
    assert proxy_in_environ("http", "r.example.org", 80, environ, upper_http_proxy=True) is None
    assert proxy_in_environ("http", "r.other.org", 80, environ,
                            upper_http_proxy=True) == "http://p:1"
