"""Manifests, indexes, image configs, platform selection and the image id (pure functions)."""

from __future__ import annotations

import hashlib
import json

import pytest

from shifter.engine.pull import image_id
from shifter.errors import ParseError
from shifter.ocibuild import catalog
from shifter.ocibuild.image import Flavor
from shifter.registry.errors import ManifestError, PlatformNotFoundError
from shifter.registry.imageconfig import parse_image_config
from shifter.registry.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1_MESSAGE,
    Descriptor,
    ImageIndex,
    ImageManifest,
    Platform,
    parse_manifest,
    parse_platform,
    select_platform,
)

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST_B, "size": 9}
CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST_A, "size": 2}


def manifest_bytes(**changes: object) -> bytes:
    document: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": CONFIG,
        "layers": [LAYER],
    }
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def index_of(*platforms: dict[str, str] | None, media_type: str = OCI_MANIFEST) -> ImageIndex:
    entries = []
    for number, platform in enumerate(platforms):
        entry: dict[str, object] = {
            "mediaType": media_type,
            "digest": "sha256:" + f"{number:x}" * 64,
            "size": 100 + number,
        }
        if platform is not None:
            entry["platform"] = platform
        entries.append(entry)
    data = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    parsed = parse_manifest(data.encode(), OCI_INDEX, "example:1")
    assert isinstance(parsed, ImageIndex)
    return parsed


# -- manifests -----------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", list(Flavor))
def test_catalog_manifests_parse(flavor: Flavor) -> None:
    built = catalog.build("busybox" if flavor is Flavor.OCI else "busybox-docker")
    parsed = parse_manifest(built.top.data, built.top.media_type, "busybox")
    assert isinstance(parsed, ImageManifest)
    assert parsed.media_type == flavor.manifest_type
    assert parsed.config.media_type == flavor.config_type
    assert [layer.digest for layer in parsed.layers] == [
        layer["digest"] for layer in json.loads(built.top.data)["layers"]
    ]


@pytest.mark.parametrize(
    ("name", "media_type"), [("multiarch", OCI_INDEX), ("multiarch-docker", DOCKER_LIST)]
)
def test_catalog_indexes_parse(name: str, media_type: str) -> None:
    built = catalog.build(name)
    parsed = parse_manifest(built.top.data, None, name)
    assert isinstance(parsed, ImageIndex)
    assert parsed.media_type == media_type
    assert [str(entry.platform) for entry in parsed.manifests] == ["linux/amd64", "linux/arm64/v8"]
    assert [entry.digest for entry in parsed.manifests] == [m.digest for m in built.manifests]


def test_media_type_from_content_type_when_the_body_has_none() -> None:
    data = manifest_bytes(mediaType=None)
    assert (
        parse_manifest(data, f"{DOCKER_MANIFEST}; charset=utf-8", "x").media_type == DOCKER_MANIFEST
    )


def test_old_oci_manifest_without_media_type_is_recognised_by_shape() -> None:
    parsed = parse_manifest(manifest_bytes(mediaType=None), "application/json", "x")
    assert isinstance(parsed, ImageManifest) and parsed.media_type == OCI_MANIFEST


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"schemaVersion": 1, "fsLayers": [], "history": []}', "application/json"),
        (b'{"schemaVersion": 1}', "application/vnd.docker.distribution.manifest.v1+prettyjws"),
        (manifest_bytes(), "application/vnd.docker.distribution.manifest.v1+json"),
    ],
)
def test_schema1_is_refused_with_advice(data: bytes, content_type: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, content_type, "old/image:1")
    assert str(caught.value) == f"old/image:1: {SCHEMA1_MESSAGE}"
    assert caught.value.hint is not None and "skopeo" in caught.value.hint


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (manifest_bytes(schemaVersion=3), "schemaVersion 3, expected 2"),
        (
            manifest_bytes(mediaType="application/vnd.example+json"),
            "'application/vnd.example+json', which is not a container image manifest",
        ),
        (manifest_bytes(layers=None), "no 'layers' list"),
        (
            manifest_bytes(config={**CONFIG, "digest": "sha512:" + "a" * 128}),
            "digest algorithm 'sha512' is not supported",
        ),
        (manifest_bytes(config={**CONFIG, "digest": "sha256:ABC"}), "invalid digest 'sha256:ABC'"),
        (manifest_bytes(config={**CONFIG, "size": -1}), "invalid size -1"),
        (manifest_bytes(config={**CONFIG, "size": True}), "invalid size True"),
        (
            manifest_bytes(
                config={**CONFIG, "mediaType": "application/vnd.cncf.helm.config.v1+json"}
            ),
            "is not a container image",
        ),
        (
            manifest_bytes(
                layers=[
                    {**LAYER, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"}
                ]
            ),
            "layer 1 has media type",
        ),
        (manifest_bytes(layers=["x"]), "descriptor that is not an object"),
    ],
)
def test_unusable_manifests_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, OCI_MANIFEST, "example:1")
    assert message in str(caught.value)


def test_unknown_top_level_media_type_without_body_type() -> None:
    data = manifest_bytes(mediaType=None)
    with pytest.raises(ManifestError) as caught:
        parse_manifest(data, "application/vnd.example.thing", "example:1")
    assert "'application/vnd.example.thing', which is not" in str(caught.value)


# -- platforms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "platform"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v7", Platform("linux", "arm", "v7")),
    ],
)
def test_parse_platform(text: str, platform: Platform) -> None:
    assert parse_platform(text) == platform
    assert str(platform) == text


@pytest.mark.parametrize(
    "text", ["linux", "linux/", "/amd64", "linux/amd64/v8/x", "linux/am d64", ""]
)
def test_parse_platform_refuses(text: str) -> None:
    with pytest.raises(ParseError, match="invalid platform"):
        parse_platform(text)


@pytest.mark.parametrize(
    ("wanted", "offered", "matches"),
    [
        ("linux/arm64", Platform("linux", "arm64", "v8"), True),
        ("linux/arm64/v8", Platform("linux", "arm64"), True),
        ("linux/arm64/v8", Platform("linux", "arm64", "V8"), True),
        ("linux/arm64", Platform("linux", "arm64", "v9"), False),
        ("linux/amd64", Platform("linux", "x86_64"), True),
        ("linux/amd64", Platform("linux", "amd64", "v3"), False),
        ("linux/amd64/v3", Platform("linux", "amd64", "v3"), True),
        ("linux/arm", Platform("linux", "arm", "v7"), True),
        ("linux/arm", Platform("linux", "arm", "v6"), False),
        ("linux/amd64", Platform("windows", "amd64"), False),
        ("Linux/AMD64", Platform("linux", "amd64"), True),
    ],
)
def test_platform_matching(wanted: str, offered: Platform, matches: bool) -> None:
    assert parse_platform(wanted).matches(offered) is matches


def test_select_platform_takes_the_first_match_and_skips_attestations() -> None:
    index = index_of(
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "arm64"},
        {"os": "linux", "architecture": "amd64"},
        None,
    )
    chosen = select_platform(index, parse_platform("linux/arm64"), "x")
    assert chosen == index.manifests[1]
    assert select_platform(index, parse_platform("linux/amd64"), "x").size == 103


def test_no_matching_platform_lists_what_there_is() -> None:
    index = index_of(
        {"os": "linux", "architecture": "amd64"},
        {"os": "unknown", "architecture": "unknown"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "linux", "architecture": "amd64"},
    )
    with pytest.raises(PlatformNotFoundError) as caught:
        select_platform(index, parse_platform("linux/ppc64le"), "repo/app:1")
    assert str(caught.value) == (
        "repo/app:1 has no image for platform linux/ppc64le; "
        "available platforms: linux/amd64, linux/arm64/v8"
    )


def test_nested_index_is_refused() -> None:
    index = index_of({"os": "linux", "architecture": "amd64"}, media_type=OCI_INDEX)
    with pytest.raises(ManifestError, match="nested image indexes"):
        select_platform(index, parse_platform("linux/amd64"), "x")


def test_descriptor_keeps_the_platform() -> None:
    index = index_of({"os": "linux", "architecture": "arm", "variant": "v6"})
    assert index.manifests[0] == Descriptor(
        OCI_MANIFEST, "sha256:" + "0" * 64, 100, Platform("linux", "arm", "v6")
    )


# -- image config and id -------------------------------------------------------------------


def test_catalog_busybox_config() -> None:
    built = catalog.build("busybox")
    config_blob = next(b for b in built.blobs if b.media_type == Flavor.OCI.config_type)
    config = parse_image_config(config_blob.data, "busybox")
    run = catalog.expected("busybox").run
    assert run is not None
    assert config.env == tuple(run.env)
    assert config.entrypoint == tuple(run.entrypoint or ())
    assert config.cmd == tuple(run.cmd or ())
    assert config.working_dir == run.working_dir
    assert config.user == run.user
    assert dict(config.labels) == dict(run.labels)
    assert config.platform == Platform("linux", "amd64")
    assert len(config.diff_ids) == 1


def test_config_leniencies_and_absences() -> None:
    config = parse_image_config(b'{"config": {"Cmd": "sh", "Entrypoint": null}}', "x")
    assert config.cmd == ("sh",) and config.entrypoint is None
    assert config.env == () and config.platform is None
    assert parse_image_config(b'{"config": null}', "x").working_dir is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"config": {"Env": [1]}}', "'Env' must be a list of strings"),
        (b'{"config": {"Labels": {"a": 1}}}', "'Labels' must map strings"),
        (b'{"config": []}', "'config' is not an object"),
        (b'{"os": 5}', "'os' must be a string"),
        (b"{", "is not valid JSON"),
    ],
)
def test_bad_configs_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_image_config(data, "x")
    assert message in str(caught.value)


def test_image_id_is_the_sha256_of_the_platform_manifest() -> None:
    built = catalog.build("multiarch")
    amd64, arm64 = built.manifests
    assert image_id(amd64.data) == hashlib.sha256(amd64.data).hexdigest() == amd64.digest[7:]
    assert image_id(amd64.data) != image_id(arm64.data)
    assert image_id(amd64.data) != built.digest[7:]
    assert ":" not in image_id(amd64.data) and len(image_id(amd64.data)) == 64
