"""Every catalog image pulled from a real registry and converted, checked against its outcome.

Each image is pushed to a fresh repository of the anonymous registry with
`shifter.ocibuild`, then `pull_and_convert` makes a squashfs from it, which is unpacked
(never mounted) and compared file by file with `catalog.expected(name)`. The other
registry variants (TLS, Basic, token) are exercised with the busybox image.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from shifter.convert import ImageBuildError, LayerError
from shifter.engine.pull import PulledImage, pull_and_convert
from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.registry.errors import AccessDeniedError, InsecureTransportError, RegistryError
from tests.service.test_pull_support import (
    check_files,
    check_run_config,
    check_tree,
    extract,
    options,
    push,
)
from tests.services.registries import RegistryEndpoint
from tests.services.token_issuer import TokenIssuer


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One layer cache for the module, as on a gateway: images share the busybox layer."""
    return tmp_path_factory.mktemp("layer-cache")


def pull(
    endpoint: RegistryEndpoint, repository: str, dest: Path, cache: Path, **overrides: object
) -> PulledImage:
    reference = f"{endpoint.netloc}/{repository}:v1"
    return pull_and_convert(reference, dest, options=options(cache, **overrides))


CONVERTING = [name for name in catalog.names() if catalog.expected(name).error is None]
FAILING = [name for name in catalog.names() if catalog.expected(name).error is not None]


@pytest.mark.parametrize("name", CONVERTING)
def test_catalog_image_converts_to_its_documented_outcome(
    name: str, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    built = push(registry_anon, name, repo_name)
    expected = catalog.expected(name)
    pulled = pull(registry_anon, repo_name, tmp_path, shared_cache, ownership="preserve")
    check_files(pulled)
    assert pulled.image_path.name == f"{pulled.id}.squashfs"
    if not built.is_index:
        assert pulled.id == hashlib.sha256(built.top.data).hexdigest()
    root = extract(pulled.image_path, tmp_path / "root")
    check_tree(pulled.image_path, root, expected, owners_kept=True)
    if expected.run is not None:
        check_run_config(pulled, expected.run)


@pytest.mark.parametrize("name", FAILING)
def test_catalog_image_that_must_fail_leaves_nothing(
    name: str, registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_anon, name, repo_name)
    error = catalog.expected(name).error
    assert error is not None
    with pytest.raises((LayerError, ImageBuildError), match=error):
        pull(registry_anon, repo_name, tmp_path, shared_cache, ownership="preserve")
    assert list(tmp_path.iterdir()) == [], "a failed conversion left files behind"


def test_root_ownership_makes_every_entry_root_owned(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_anon, "layered", repo_name)
    pulled = pull(registry_anon, repo_name, tmp_path, shared_cache)  # ownership "root"
    root = extract(pulled.image_path, tmp_path / "root")
    check_tree(pulled.image_path, root, catalog.expected("layered"), owners_kept=False)
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in root.rglob("*")}
    assert owners == {(0, 0)}


def test_sidecar_records_source_platform_digests_and_layers(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    built = push(registry_anon, "busybox", repo_name)
    pulled = pull(registry_anon, repo_name, tmp_path, shared_cache)
    document = json.loads(pulled.sidecar_path.read_text())
    manifest = json.loads(built.top.data)
    assert document["id"] == pulled.id
    assert document["manifest_digest"] == built.digest == pulled.manifest_digest
    assert document["config_digest"] == manifest["config"]["digest"]
    assert [layer["digest"] for layer in document["layers"]] == [
        layer["digest"] for layer in manifest["layers"]
    ]
    assert document["platform"]["os"] == "linux"
    assert document["platform"]["architecture"] == "amd64"
    assert document["source"]["reference"] == f"{registry_anon.netloc}/{repo_name}:v1"
    assert document["created"] == "2020-01-01T00:00:00Z"
    assert document["conversion"]["format"] == "squashfs"
    # The meta file holds only keys the original runtime knows.
    keys = {line.split(":", 1)[0] for line in pulled.meta_path.read_text().splitlines()}
    assert keys == {"FORMAT", "ENTRY", "CMD", "WORKDIR", "ENV"}


def test_private_image_meta_carries_the_acls(
    registry_anon: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_anon, "busybox", repo_name)
    reference = f"{registry_anon.netloc}/{repo_name}:v1"
    pulled = pull_and_convert(
        reference,
        tmp_path,
        options=options(shared_cache, mode=0o600),
        user_acl=[1001, 1002],
        group_acl=[1003],
    )
    check_files(pulled, mode=0o600)
    meta = read_meta(str(pulled.meta_path))
    assert (meta.user_acl, meta.group_acl) == ((1001, 1002), (1003,))
    assert "USERACL: 1001,1002\nGROUPACL: 1003\n" in pulled.meta_path.read_text()


def test_tls_registry_verified_with_its_ca(
    registry_tls: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_tls, "busybox", repo_name)
    assert registry_tls.ca_file is not None
    pulled = pull(
        registry_tls,
        repo_name,
        tmp_path,
        shared_cache,
        insecure=False,
        ca_file=str(registry_tls.ca_file),
    )
    root = extract(pulled.image_path, tmp_path / "root")
    check_tree(pulled.image_path, root, catalog.expected("busybox"), owners_kept=False)
    check_run_config(pulled, catalog.expected("busybox").run)  # type: ignore[arg-type]


def test_tls_registry_with_an_unknown_ca_is_refused(
    registry_tls: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_tls, "busybox", repo_name)
    with pytest.raises(RegistryError, match="cannot verify the TLS certificate") as caught:
        pull(registry_tls, repo_name, tmp_path, shared_cache, insecure=False)
    assert caught.value.hint is not None and "--ca" in caught.value.hint


def test_basic_auth_registry_with_credentials(
    registry_basic: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_basic, "busybox", repo_name, user="pusher")
    creds = ("puller", registry_basic.credentials["puller"])
    pulled = pull(registry_basic, repo_name, tmp_path, shared_cache, credentials=creds)
    check_run_config(pulled, catalog.expected("busybox").run)  # type: ignore[arg-type]


def test_basic_auth_registry_refuses_anonymous_and_wrong_password(
    registry_basic: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_basic, "busybox", repo_name, user="pusher")
    with pytest.raises(AccessDeniedError, match=f"access denied: .*{repo_name}:v1: UNAUTHORIZED"):
        pull(registry_basic, repo_name, tmp_path, shared_cache)
    with pytest.raises(AccessDeniedError, match="access denied"):
        pull(registry_basic, repo_name, tmp_path, shared_cache, credentials=("puller", "wrong"))


def test_credentials_never_go_over_plain_http_unless_insecure(
    registry_basic: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    creds = ("puller", registry_basic.credentials["puller"])
    location = {registry_basic.netloc: _location(registry_basic.url)}
    with pytest.raises(InsecureTransportError, match="plain http"):
        pull(
            registry_basic,
            repo_name,
            tmp_path,
            shared_cache,
            insecure=False,
            credentials=creds,
            locations=location,
            default_location=registry_basic.netloc,
        )


def _location(url: str) -> object:
    from shifter.engine.source import RegistryLocation

    return RegistryLocation(url)


def test_token_registry_anonymous_public_repository(
    registry_token: RegistryEndpoint, repo_name: str, tmp_path: Path, shared_cache: Path
) -> None:
    push(registry_token, "busybox", repo_name, user="pusher")
    pulled = pull(registry_token, repo_name, tmp_path, shared_cache)
    check_run_config(pulled, catalog.expected("busybox").run)  # type: ignore[arg-type]


def test_token_registry_private_repository_needs_credentials(
    registry_token: RegistryEndpoint,
    token_issuer: TokenIssuer,
    make_repo_name: object,
    tmp_path: Path,
    shared_cache: Path,
) -> None:
    repository = make_repo_name(prefix="private")  # type: ignore[operator]
    push(registry_token, "busybox", repository, user="pusher")
    with pytest.raises(AccessDeniedError, match=f"access denied: .*{repository}:v1: UNAUTHORIZED"):
        pull(registry_token, repository, tmp_path, shared_cache)
    before = token_issuer.tokens_issued
    creds = ("alice", registry_token.credentials["alice"])
    pulled = pull(registry_token, repository, tmp_path, shared_cache, credentials=creds)
    assert pulled.id
    assert token_issuer.tokens_issued > before
    assert any(t.subject == "alice" for t in token_issuer.issued)
