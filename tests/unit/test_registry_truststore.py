"""The registry client's CA store: Debian's hashed CA directory read lazily, else the default.

The shortcut must only be taken when the directory trusts what the bundle trusts (Debian's
layout, the bundle inside the hashed directory) and the environment picks nothing else.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from shifter.registry.truststore import default_context, hashed_ca_directory


def layout(
    tmp_path: Path, *, bundle_inside: bool = True, hashed: bool = True
) -> ssl.DefaultVerifyPaths:
    """A fake OpenSSL configuration: `certs/` (the CA directory), its bundle, a link dir."""
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / ("0a775a30.0" if hashed else "GTS_Root_R1.pem")).write_text("")
    bundle = (certs if bundle_inside else tmp_path) / "ca-certificates.crt"
    bundle.write_text("")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "certs").symlink_to(certs)  # as /usr/lib/ssl/certs -> /etc/ssl/certs
    (tmp_path / "lib" / "cert.pem").symlink_to(bundle)
    return ssl.DefaultVerifyPaths(
        cafile=str(bundle),
        capath=str(certs),
        openssl_cafile_env="SSL_CERT_FILE",
        openssl_cafile=str(tmp_path / "lib" / "cert.pem"),
        openssl_capath_env="SSL_CERT_DIR",
        openssl_capath=str(tmp_path / "lib" / "certs"),
    )


def test_debians_layout_uses_the_directory(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    assert hashed_ca_directory({}, paths) == str(tmp_path / "certs")


def test_the_environment_naming_the_defaults_changes_nothing(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    environ = {"SSL_CERT_FILE": paths.cafile, "SSL_CERT_DIR": str(tmp_path / "lib" / "certs")}
    assert hashed_ca_directory(environ, paths) == str(tmp_path / "certs")


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
def test_a_bundle_or_directory_of_the_sites_own_keeps_the_default(
    tmp_path: Path, variable: str
) -> None:
    paths = layout(tmp_path)
    other = tmp_path / "site-ca"
    other.mkdir()
    assert hashed_ca_directory({variable: str(other)}, paths) is None


def test_a_directory_list_keeps_the_default(tmp_path: Path) -> None:
    paths = layout(tmp_path)
    listed = f"{tmp_path / 'certs'}:{tmp_path}"
    assert hashed_ca_directory({"SSL_CERT_DIR": listed}, paths) is None


def test_a_bundle_outside_the_directory_keeps_the_default(tmp_path: Path) -> None:
    # Red Hat's layout: the bundle is made elsewhere, the directory may hold other files.
    assert hashed_ca_directory({}, layout(tmp_path, bundle_inside=False)) is None


def test_a_directory_without_hash_names_keeps_the_default(tmp_path: Path) -> None:
    assert hashed_ca_directory({}, layout(tmp_path, hashed=False)) is None


def test_a_missing_directory_keeps_the_default(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    paths = layout(tmp_path)._replace(
        openssl_cafile=str(missing / "cert.pem"), openssl_capath=str(missing)
    )
    assert hashed_ca_directory({}, paths) is None


def test_this_machine_loads_no_certificate_up_front_and_verifies() -> None:
    # The development and test machines are Debian: the lazy path is the one in use.
    assert hashed_ca_directory({}) is not None
    context = default_context({})
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
