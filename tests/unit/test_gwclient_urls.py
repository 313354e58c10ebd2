"""Gateway URLs: the original's curl_easy_escape of type and tag, base URL parsing."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.gwclient.errors import GatewayError
from shifter.gwclient.urls import api_path, escape, parse_gateway_url

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("ubuntu:16.04", "ubuntu%3A16.04"),
        ("org/repo:tag", "org%2Frepo%3Atag"),
        ("docker", "docker"),
        ("a-b.c_d~e", "a-b.c_d~e"),  # the unreserved characters stay
        ("quay.io:5000/org/app@sha256:ab", "quay.io%3A5000%2Forg%2Fapp%40sha256%3Aab"),
        ("a b+c", "a%20b%2Bc"),
        ("é", "%C3%A9"),  # UTF-8 bytes, upper-case hex, as curl
    ],
)
def test_escape_is_curl_easy_escape(text: str, escaped: str) -> None:
    assert escape(text) == escaped


@given(st.text(max_size=40))
def test_escape_round_trips_and_leaves_no_reserved_character(text: str) -> None:
    escaped = escape(text)
    assert urllib.parse.unquote(escaped) == text
    assert set(escaped) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%"
    )


def test_api_paths_have_the_original_shapes() -> None:
    assert api_path("lookup", "mycluster", "docker", "ubuntu:16.04") == (
        "/api/lookup/mycluster/docker/ubuntu%3A16.04/"
    )
    assert api_path("pull", "mycluster", "docker", "nersc/foo:1.0") == (
        "/api/pull/mycluster/docker/nersc%2Ffoo%3A1.0/"
    )
    assert api_path("list", "mycluster") == "/api/list/mycluster/"
    assert api_path("autoexpire", "mycluster") == "/api/autoexpire/mycluster/"


def test_gateway_urls_are_split_for_http_client() -> None:
    plain = parse_gateway_url("http://imagegw:5000")
    assert (plain.scheme, plain.host, plain.port, plain.prefix) == ("http", "imagegw", 5000, "")
    assert plain.url("/api/list/x/") == "http://imagegw:5000/api/list/x/"
    tls = parse_gateway_url("HTTPS://gw.example.org/imagegw/")
    assert (tls.scheme, tls.host, tls.port, tls.prefix) == (
        "https", "gw.example.org", 443, "/imagegw",
    )
    assert tls.url("/api/list/x/") == "https://gw.example.org:443/imagegw/api/list/x/"
    v6 = parse_gateway_url("http://[::1]:8000")
    assert (v6.host, v6.port, v6.netloc) == ("::1", 8000, "[::1]:8000")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("imagegw:5000", "http:// or https://"),
        ("ftp://imagegw", "http:// or https://"),
        ("http://", "no host"),
        ("http://gw:http", "port 'http'"),
        ("http://gw:70000", "port '70000'"),
        ("http://user:pw@gw:5000", "user names and passwords"),
        ("http://gw:5000/?x=1", "query or fragment"),
        ("http://[::1:5000", "IPv6"),
    ],
)
def test_unusable_gateway_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(GatewayError, match="is not usable") as caught:
        parse_gateway_url(url)
    assert problem in str(caught.value)
    assert caught.value.hint is not None and "imageGateway" in caught.value.hint
