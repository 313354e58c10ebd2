"""The reuse signature (the original's shifterConfig.json), the enter record setupRoot
leaves for `shifter`, and the fast way's decision, which must agree with the full one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shifter.errors import ShifterError
from shifter.runtime.config import load as config_module
from shifter.runtime.config.values import NO_MODULES
from shifter.runtime.job import enter
from shifter.runtime.request.selection import (
    NO_MODULES as SELECTION_NO_MODULES,
)
from shifter.runtime.request.selection import (
    choose_image,
    module_names,
    pick_image,
)
from shifter.runtime.rootfs.signature import EnterRecord, container_signature, file_stamp
from shifter.runtime.volumes.spec import parse_volume_specs

SRC = Path(__file__).resolve().parents[2] / "src"
IMAGE = "a" * 64


def _record(**changes: object) -> EnterRecord:
    fields: dict[str, object] = {
        "config_path": "/etc/shifter/udiRoot.conf",
        "config_stamp": (1, 2, 3, 4, 5),
        "udi_mount": "/var/udiMount",
        "signature": "{}",
        "uid": os.getuid(),
        "user": "someone",
        "image_id": IMAGE,
        "volume_text": "",
        "modules": (),
        "default_modules": (),
        "image_env": ("PATH=/bin",),
        "entry": None,
        "cmd": ("sh",),
        "workdir": "/work",
        "site_env": (("append", "PATH", "/opt/bin"),),
        "userhooks": (),
    }
    fields.update(changes)
    return EnterRecord(**fields)  # type: ignore[arg-type]


def test_signature_with_nothing_set() -> None:
    assert container_signature("testImage", "dmj", (), ()) == (
        '{"identifier":"testImage","user":"dmj","volMap":"","modules":""}'
    )


def test_signature_sorts_volumes_and_ends_each_module_with_a_comma() -> None:
    specs = parse_volume_specs("/d:/c;/a:/b;/q:/r;/a:/c:rec:perNodeCache=size=100M:ro")
    assert container_signature("x", "u", specs, ("m1", "m2")) == (
        '{"identifier":"x","user":"u","volMap":"/a:/b;/a:/c:ro:rec:perNodeCache='
        'size=104857600,bs=1048576,method=loop,fstype=xfs;/d:/c;/q:/r","modules":"m1,m2,"}'
    )


def test_record_round_trip() -> None:
    record = _record(modules=("mpich",), entry=("/bin/echo", "x"))
    back = EnterRecord.from_bytes(record.to_bytes())
    assert back is not None
    for name in EnterRecord.__slots__:
        assert getattr(back, name) == getattr(record, name), name


@pytest.mark.parametrize(
    "data",
    [b"", b"not marshal", b"\x00\x01\x02", __import__("marshal").dumps([1, 2])],
)
def test_anything_but_a_record_reads_as_none(data: bytes) -> None:
    assert EnterRecord.from_bytes(data) is None


def test_another_version_or_other_fields_read_as_none() -> None:
    import marshal

    fields = marshal.loads(_record().to_bytes())
    assert EnterRecord.from_bytes(marshal.dumps({**fields, "version": 99})) is None
    assert EnterRecord.from_bytes(marshal.dumps({**fields, "extra": 1})) is None
    del fields["uid"]
    assert EnterRecord.from_bytes(marshal.dumps(fields)) is None


def test_a_file_stamp_changes_with_the_content(tmp_path: Path) -> None:
    path = tmp_path / "udiRoot.conf"
    path.write_text("udiMount=/a\n")
    before = file_stamp(os.stat(path))
    assert file_stamp(os.stat(path)) == before
    path.write_text("udiMount=/b\n")
    assert file_stamp(os.stat(path)) != before


def test_the_fast_way_uses_the_configs_own_constants() -> None:
    assert enter.DEFAULT_CONFIG_PATH == config_module.DEFAULT_CONFIG_PATH
    assert enter.CONFIG_ENV == config_module.CONFIG_ENV
    assert SELECTION_NO_MODULES == NO_MODULES


@pytest.mark.parametrize(
    "text",
    [
        "udiMount=/var/udiMount\n",
        "udiMount=/a\n# udiMount=/b\nudiMount = /c \n",
        "loopMount=/l\n  udiMount\t=\t/x\n",
        "imagePath=/i\n",
        "siteFs=/a:/a;\\\nudiMount=/x\nudiMount=/y\n",
        "udiMount=/a/\\\n  b\n",
    ],
)
def test_the_udi_mount_locator_agrees_with_the_config_reader_or_gives_up(text: str) -> None:
    from shifter.keyvalue import read_entries

    entries = [e for e in read_entries(text, delimiter="=", source="c") if e.key == "udiMount"]
    truth = entries[-1].value if entries else None
    # The locator finds the reader's value, or gives up (the full way reads the file).
    assert enter._udi_mount(text) in (truth, None)


@pytest.mark.parametrize(
    ("selection", "defaults", "names"),
    [
        (None, ("a", "b"), ["a", "b"]),
        ("none", ("a",), []),
        (" NoNe ", ("a",), []),
        ("b,a", ("a",), ["b", "a"]),
        ("a, b", (), ["a", "b"]),
    ],
)
def test_module_names(selection: str | None, defaults: tuple[str, ...], names: list[str]) -> None:
    assert module_names(selection, defaults) == names


ENVIRONMENTS = [
    {},
    {"SHIFTER": f"id:{IMAGE}"},
    {"SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": IMAGE},
    {"SLURM_SPANK_SHIFTER_IMAGETYPE": "id", "SLURM_SPANK_SHIFTER_IMAGE": IMAGE},
    {"SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": IMAGE, "SHIFTER_IMAGEREQUEST": "docker:x"},
    {"SHIFTER_IMAGEREQUEST": f"id:{IMAGE}"},
    {"SHIFTER": f"id:{IMAGE}", "SHIFTER_IMAGETYPE": "docker", "SHIFTER_IMAGE": "ubuntu"},
]


@pytest.mark.parametrize("environ", ENVIRONMENTS[1:])
@pytest.mark.parametrize("option", [None, f"id:{IMAGE}"])
def test_pick_image_is_what_choose_image_parses(
    option: str | None, environ: dict[str, str]
) -> None:
    picked = pick_image(option, environ)
    assert picked is not None
    choice = choose_image(option, environ, "docker")
    text, origin, request, _ = picked
    assert (choice.origin, choice.request) == (origin, request)
    # The fast way's test, `text == "id:" + ID`, holds exactly when the full way finds ID.
    assert (text == f"id:{IMAGE}") == (str(choice.descriptor) == f"id:{IMAGE}")


def test_no_image_anywhere() -> None:
    assert pick_image(None, ENVIRONMENTS[0]) is None
    with pytest.raises(ShifterError, match="no image specified"):
        choose_image(None, ENVIRONMENTS[0], "docker")


def test_the_record_matches_only_its_own_request() -> None:
    record = _record(volume_text="/tmp/a:/data", modules=("m",), default_modules=())
    image = {"image": f"id:{IMAGE}"}
    same = {**image, "volume": ["/tmp/a:/data"], "module": "m"}
    assert enter._matches(record, same, {}) == (f"id:{IMAGE}", f"id:{IMAGE}")
    from_environment = {"SHIFTER_VOLUME": "/tmp/a:/data", "SHIFTER_MODULE": "m"}
    assert enter._matches(record, image, from_environment) is not None
    for other in (
        {**same, "image": f"id:{'b' * 64}"},
        {**same, "volume": ["/tmp/a:/other"]},
        {**same, "volume": []},
        {**same, "module": "none"},
        {key: value for key, value in same.items() if key != "module"},
    ):
        assert enter._matches(record, other, {}) is None, other
    assert enter._matches(_record(uid=os.getuid() + 1), image, {}) is None
    # The defaults recorded by setupRoot stand in for the configuration's.
    defaults = _record(modules=("m",), default_modules=("m",))
    assert enter._matches(defaults, image, {}) is not None


def test_fast_options_are_the_ones_it_understands() -> None:
    from shifter.cli.shifter import LONG, SHORT

    destinations = {dest for _, dest in (*SHORT.values(), *LONG.values())}
    assert destinations >= enter.FAST_OPTIONS
    assert destinations - enter.FAST_OPTIONS == {"help", "verbose", "debug", "check_config"}


def test_the_enter_path_loads_nothing_heavy() -> None:
    """What the fast way imports, in a bare interpreter (-I -S, like the launcher)."""
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r}); "
        "import shifter.cli.shifter, shifter.runtime.job.enter, shifter.runtime.start, "
        "shifter.runtime.request.selection, shifter.runtime.site.environment, "
        "shifter.runtime.request.command, shifter.runtime.identity.privileges, "
        "shifter.runtime.rootfs.signature, shifter.keyvalue, "
        "shifter.sys.namespace, shifter.sys.root, shifter.sys.caps; "
        "print(' '.join(sorted(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    heavy = {"enum", "functools", "collections", "typing", "re", "dataclasses", "signal",
             "logging", "subprocess", "shifter.runtime.config.load", "shifter.image.descriptor",
             "shifter.runtime.volumes.spec", "shifter.runtime.rootfs.build",
             "shifter.sys.mount"}  # fmt: skip
    assert loaded & heavy == set()
