"""Layers, configs, manifests and the test-image catalog, checked without a registry."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import zstandard

from shifter.ocibuild import catalog
from shifter.ocibuild.image import (
    BuiltImage,
    Flavor,
    Platform,
    RunConfig,
    image_config,
    image_index,
    image_manifest,
    single_image,
)
from shifter.ocibuild.layer import (
    FIXED_MTIME,
    Compression,
    Device,
    Dir,
    Entry,
    Fifo,
    File,
    HardLink,
    Opaque,
    Symlink,
    Whiteout,
    build_layer,
    opaque_name,
    tar_bytes,
    whiteout_name,
    with_parents,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "test-images.md"
SAMPLE: list[Entry] = [
    Dir("etc"),
    File("etc/hello", b"hello\n", mode=0o640, uid=1000, gid=100),
    Symlink("etc/link", "hello"),
    HardLink("etc/hard", "etc/hello"),
    Whiteout("etc/old"),
    Opaque("var"),
    Device("dev/null", 1, 3),
    Device("dev/sda", 8, 0, block=True),
    Fifo("run/fifo"),
]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def members(tar: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar), encoding="utf-8") as archive:
        return archive.getmembers()


def decompress(blob: bytes, compression: Compression) -> bytes:
    if compression is Compression.GZIP:
        return gzip.decompress(blob)
    if compression is Compression.ZSTD:
        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    return blob


@pytest.mark.parametrize("compression", list(Compression))
def test_a_layer_is_the_same_bytes_every_time(compression: Compression) -> None:
    first, second = build_layer(SAMPLE, compression), build_layer(list(SAMPLE), compression)
    assert first.blob == second.blob
    assert first.digest == second.digest


@pytest.mark.parametrize("compression", list(Compression))
def test_diff_id_digest_and_size(compression: Compression) -> None:
    layer = build_layer(SAMPLE, compression)
    tar = decompress(layer.blob, compression)
    assert tar == tar_bytes(SAMPLE)
    assert layer.diff_id == sha256(tar)
    assert layer.digest == sha256(layer.blob)
    assert layer.size == len(layer.blob)
    assert (layer.digest == layer.diff_id) is (compression is Compression.NONE)


def test_gzip_header_carries_no_timestamp() -> None:
    blob = build_layer(SAMPLE, Compression.GZIP).blob
    assert blob[:2] == b"\x1f\x8b"
    assert blob[4:8] == b"\x00\x00\x00\x00"


def test_zstd_blob_is_a_zstd_frame() -> None:
    assert build_layer(SAMPLE, Compression.ZSTD).blob[:4] == b"\x28\xb5\x2f\xfd"


def test_one_byte_of_content_changes_both_digests() -> None:
    changed = [File("etc/hello", b"hellO\n") if e == SAMPLE[1] else e for e in SAMPLE]
    a, b = build_layer(SAMPLE), build_layer(changed)
    assert a.digest != b.digest
    assert a.diff_id != b.diff_id


def test_entries_keep_their_order_type_and_metadata() -> None:
    got = [(m.name, m.type, m.mode, m.uid, m.gid, m.linkname) for m in members(tar_bytes(SAMPLE))]
    assert got == [
        ("etc", tarfile.DIRTYPE, 0o755, 0, 0, ""),
        ("etc/hello", tarfile.REGTYPE, 0o640, 1000, 100, ""),
        ("etc/link", tarfile.SYMTYPE, 0o777, 0, 0, "hello"),
        ("etc/hard", tarfile.LNKTYPE, 0o644, 0, 0, "etc/hello"),
        ("etc/.wh.old", tarfile.REGTYPE, 0o644, 0, 0, ""),
        ("var/.wh..wh..opq", tarfile.REGTYPE, 0o644, 0, 0, ""),
        ("dev/null", tarfile.CHRTYPE, 0o666, 0, 0, ""),
        ("dev/sda", tarfile.BLKTYPE, 0o666, 0, 0, ""),
        ("run/fifo", tarfile.FIFOTYPE, 0o644, 0, 0, ""),
    ]
    devices = [(m.devmajor, m.devminor) for m in members(tar_bytes(SAMPLE)) if m.isdev()]
    assert devices == [(1, 3), (8, 0), (0, 0)]  # a fifo counts as a device to tarfile


def test_times_and_owner_names_are_fixed() -> None:
    for member in members(tar_bytes(SAMPLE)):
        assert member.mtime == FIXED_MTIME
        assert (member.uname, member.gname) == ("", "")


def test_hostile_names_reach_the_tar_unchanged() -> None:
    names: list[str | bytes] = [
        "../../escape",
        "/abs/file",
        "a/../../b",
        b"not-utf8-\xff\xfe",
        "données/naïve-文件.txt",
        "x" * 300,
    ]
    tar = tar_bytes([File(name, b"") for name in names])
    raw = [m.name.encode("utf-8", "surrogateescape") for m in members(tar)]
    assert raw == [n if isinstance(n, bytes) else n.encode() for n in names]


def test_xattrs_travel_as_pax_headers_byte_for_byte() -> None:
    capability = bytes([1, 0, 0, 2, 0, 0x20, 0, 0, 0xFF, 0xFE]) + bytes(10)
    tar = tar_bytes([File("bin/ping", b"", xattrs={"security.capability": capability})])
    (member,) = members(tar)
    value = member.pax_headers["SCHILY.xattr.security.capability"]
    assert value.encode("utf-8", "surrogateescape") == capability


def test_whiteout_and_opaque_names() -> None:
    assert whiteout_name("a/b/c") == "a/b/.wh.c"
    assert whiteout_name("top") == ".wh.top"
    assert whiteout_name("dir/") == ".wh.dir"
    assert opaque_name("a/b") == "a/b/.wh..wh..opq"


def test_with_parents_adds_missing_directories_in_sorted_order() -> None:
    listed = with_parents([File("z/y/file"), Dir("a", mode=0o700), File("a/b")])
    assert [(type(e).__name__, e.path) for e in listed] == [  # type: ignore[union-attr]
        ("Dir", "a"),
        ("File", "a/b"),
        ("Dir", "z"),
        ("Dir", "z/y"),
        ("File", "z/y/file"),
    ]
    assert listed[0] == Dir("a", mode=0o700)  # an explicit directory is kept as given


def test_config_lists_diff_ids_history_platform_and_run_config() -> None:
    layers = [build_layer([File("a")], comment="first"), build_layer([File("b")], comment="two")]
    run = RunConfig(
        env=("PATH=/bin", "X=1"),
        entrypoint=("/bin/sh", "-c"),
        cmd=("true",),
        working_dir="/w",
        user="1000:1000",
        labels={"k": "v"},
    )
    blob = image_config(layers, platform=Platform("arm64", variant="v8"), run=run)
    config = json.loads(blob.data)
    assert blob.media_type == "application/vnd.oci.image.config.v1+json"
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]}
    assert [h["comment"] for h in config["history"]] == ["first", "two"]
    assert (config["architecture"], config["os"], config["variant"]) == ("arm64", "linux", "v8")
    assert config["config"] == {
        "Env": ["PATH=/bin", "X=1"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["true"],
        "WorkingDir": "/w",
        "User": "1000:1000",
        "Labels": {"k": "v"},
    }


@pytest.mark.parametrize(
    ("flavor", "manifest_type", "config_type", "gzip_type", "plain_type"),
    [
        (
            Flavor.OCI,
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            Flavor.DOCKER,
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            "application/vnd.docker.image.rootfs.diff.tar",
        ),
    ],
)
def test_manifest_shape(
    flavor: Flavor, manifest_type: str, config_type: str, gzip_type: str, plain_type: str
) -> None:
    layers = [build_layer([File("a")]), build_layer([File("b")], Compression.NONE)]
    config = image_config(layers, flavor=flavor)
    blob = image_manifest(config, layers, flavor=flavor)
    manifest = json.loads(blob.data)
    assert blob.media_type == manifest["mediaType"] == manifest_type
    assert manifest["schemaVersion"] == 2
    assert manifest["config"] == {
        "mediaType": config_type,
        "digest": sha256(config.data),
        "size": len(config.data),
    }
    assert manifest["layers"] == [
        {"mediaType": gzip_type, "digest": layers[0].digest, "size": layers[0].size},
        {"mediaType": plain_type, "digest": layers[1].digest, "size": layers[1].size},
    ]


def test_zstd_layers_need_oci_media_types() -> None:
    assert Flavor.OCI.layer_type(Compression.ZSTD) == "application/vnd.oci.image.layer.v1.tar+zstd"
    with pytest.raises(ValueError, match="no zstd"):
        Flavor.DOCKER.layer_type(Compression.ZSTD)


@pytest.mark.parametrize(
    ("flavor", "index_type"),
    [
        (Flavor.OCI, "application/vnd.oci.image.index.v1+json"),
        (Flavor.DOCKER, "application/vnd.docker.distribution.manifest.list.v2+json"),
    ],
)
def test_index_points_at_one_manifest_per_platform(flavor: Flavor, index_type: str) -> None:
    amd = single_image([build_layer([File("amd")])], flavor=flavor)
    arm = single_image(
        [build_layer([File("arm")])], platform=Platform("arm64", variant="v8"), flavor=flavor
    )
    blob = image_index([(amd.manifest, amd.platform), (arm.manifest, arm.platform)], flavor=flavor)
    index = json.loads(blob.data)
    assert blob.media_type == index["mediaType"] == index_type
    assert index["manifests"] == [
        {
            "mediaType": flavor.manifest_type,
            "digest": amd.manifest.digest,
            "size": amd.manifest.size,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": flavor.manifest_type,
            "digest": arm.manifest.digest,
            "size": arm.manifest.size,
            "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
        },
    ]


# -- the catalog -------------------------------------------------------------------------

SMALL_NAMES = [name for name in catalog.names() if name != "tarbomb"]


@pytest.fixture(scope="module")
def built() -> dict[str, BuiltImage]:
    return {name: catalog.build(name) for name in SMALL_NAMES}


def manifests_of(image: BuiltImage) -> list[dict[str, object]]:
    if image.is_index:
        return [json.loads(m.data) for m in image.manifests]
    return [json.loads(image.top.data)]


def layer_tars(image: BuiltImage, manifest: dict[str, object]) -> list[bytes]:
    blobs = {blob.digest: blob.data for blob in image.blobs}
    out = []
    for layer in manifest["layers"]:  # type: ignore[attr-defined]
        media_type, data = layer["mediaType"], blobs[layer["digest"]]
        if media_type.endswith("gzip"):
            out.append(gzip.decompress(data))
        elif media_type.endswith("zstd"):
            out.append(zstandard.ZstdDecompressor().decompressobj().decompress(data))
        else:
            out.append(data)
    return out


def test_catalog_names_are_unique_and_each_is_documented() -> None:
    names = catalog.names()
    assert len(names) == len(set(names))
    documented = DOCS.read_text()
    for name in names:
        assert f"`{name}`" in documented, f"{name} is missing from {DOCS.name}"


def test_every_expectation_states_one_outcome_with_image_paths() -> None:
    for entry in catalog.entries():
        expected = entry.expected
        assert expected.outcome
        paths = [
            *expected.files,
            *expected.dirs,
            *expected.symlinks,
            *expected.absent,
            *expected.modes,
            *(p for pair in expected.hardlinks for p in pair),
            *expected.owners,
            *expected.no_xattrs,
            *expected.file_counts,
        ]
        assert all(p.startswith("/") for p in paths), entry.name
        assert expected.error is not None or expected.files or expected.absent, entry.name


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="layered"):
        catalog.build("no-such-image")


def test_catalog_images_are_deterministic(built: dict[str, BuiltImage]) -> None:
    for name in ("busybox", "layered", "multiarch", "compression-zstd"):
        assert catalog.build(name).digest == built[name].digest


def test_every_blob_a_manifest_names_is_built(built: dict[str, BuiltImage]) -> None:
    for name, image in built.items():
        assert image.name == name
        digests = {blob.digest for blob in image.blobs}
        assert len(digests) == len(image.blobs), f"{name} lists a blob twice"
        for manifest in manifests_of(image):
            config = manifest["config"]["digest"]  # type: ignore[index]
            assert config in digests
            layer_digests = {layer["digest"] for layer in manifest["layers"]}  # type: ignore[attr-defined]
            assert layer_digests <= digests
            diff_ids = json.loads(next(b.data for b in image.blobs if b.digest == config))
            tars = layer_tars(image, manifest)
            assert diff_ids["rootfs"]["diff_ids"] == [sha256(tar) for tar in tars]


def test_busybox_layer_holds_the_host_binary_and_applet_links(
    built: dict[str, BuiltImage],
) -> None:
    (base,) = layer_tars(built["busybox"], manifests_of(built["busybox"])[0])
    with tarfile.open(fileobj=io.BytesIO(base)) as archive:
        binary = archive.extractfile("bin/busybox")
        assert binary is not None
        assert binary.read() == catalog.BUSYBOX.read_bytes()
        links = {m.name: m.linkname for m in archive.getmembers() if m.issym()}
    assert links == {f"bin/{applet}": "busybox" for applet in catalog.APPLETS}
    config = json.loads(built["busybox"].blobs[0].data)
    assert config["config"]["Entrypoint"] == ["/bin/echo", "shifter-test-entrypoint"]
    assert config["config"]["User"] == "1000:1000"


def test_flavours_use_their_own_media_types(built: dict[str, BuiltImage]) -> None:
    assert built["busybox"].top.media_type == Flavor.OCI.manifest_type
    assert built["busybox-docker"].top.media_type == Flavor.DOCKER.manifest_type
    assert built["multiarch"].top.media_type == Flavor.OCI.index_type
    assert built["multiarch-docker"].top.media_type == Flavor.DOCKER.index_type
    for compression in Compression:
        manifest = manifests_of(built[f"compression-{compression.value}"])[0]
        types = {layer["mediaType"] for layer in manifest["layers"]}  # type: ignore[attr-defined]
        assert types == {Flavor.OCI.layer_type(compression)}


def test_multiarch_platforms_differ_in_content(built: dict[str, BuiltImage]) -> None:
    index = json.loads(built["multiarch"].top.data)
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux", "variant": "v8"},
    ]
    arches = []
    for manifest in manifests_of(built["multiarch"]):
        marker = layer_tars(built["multiarch"], manifest)[-1]
        with tarfile.open(fileobj=io.BytesIO(marker)) as archive:
            arches.append(archive.extractfile("etc/arch").read())  # type: ignore[union-attr]
    assert arches == [b"amd64\n", b"arm64\n"]


def test_layered_ends_with_a_layer_holding_only_a_hard_link(built: dict[str, BuiltImage]) -> None:
    last = layer_tars(built["layered"], manifests_of(built["layered"])[0])[-1]
    assert [(m.name, m.type, m.linkname) for m in members(last)] == [
        ("opt/lower-link", tarfile.LNKTYPE, "opt/lower/target.txt")
    ]


def test_hostile_layers_carry_their_raw_entries(built: dict[str, BuiltImage]) -> None:
    def upper(name: str) -> list[tarfile.TarInfo]:
        return members(layer_tars(built[name], manifests_of(built[name])[0])[-1])

    assert "../../escape" in [m.name for m in upper("hostile-dotdot")]
    assert "/abs/file" in [m.name for m in upper("hostile-absolute")]
    evil = [(m.name, m.linkname) for m in upper("hostile-symlink-etc")][-2:]
    assert evil == [("evil", "/etc"), ("evil/passwd", "")]
    leak = upper("hostile-hardlink-dotdot-missing")[-1]
    assert (leak.type, leak.linkname) == (tarfile.LNKTYPE, "../../../etc/shadow")
    assert {m.type for m in upper("hostile-devices")} >= {tarfile.CHRTYPE, tarfile.BLKTYPE}
    assert tarfile.FIFOTYPE in {m.type for m in upper("hostile-fifo")}
    capped = next(m for m in upper("hostile-xattrs") if m.name == "hostile/capped")
    assert "SCHILY.xattr.security.capability" in capped.pax_headers


def test_tar_bomb_size_is_a_parameter() -> None:
    image = catalog.tar_bomb(2500)
    manifest = manifests_of(image)[0]
    bomb = members(layer_tars(image, manifest)[-1])
    assert sum(m.isfile() for m in bomb) == 2500
    assert sum(m.isdir() for m in bomb) == 1 + 3  # /bomb and a directory per thousand
