"""Volume policy: which destinations and flags users and sites may use (spec 1.12)."""

from __future__ import annotations

import re

import pytest

from shifter.runtime.rootfs.build import container_signature
from shifter.runtime.volumes.policy import (
    VolumeError,
    check_site_volume,
    check_user_volume,
    site_target_problem,
    user_source_problem,
    user_source_read_only,
    user_target_problem,
)
from shifter.runtime.volumes.spec import parse_volume_spec, parse_volume_specs

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "/etc", "/var/log", "/var", "/var/tmp/x", "/opt", "/opt/udiImage",
     "/opt/udiImage/bin", "/proc", "/proc/1", "/sys/fs", "/dev/shm", "/"],
)  # fmt: skip
def test_user_destinations_refused(target: str) -> None:
    assert user_target_problem(target) is not None


@pytest.mark.parametrize(
    "target", ["/var/tmp", "/mnt", "/input", "/opt/myStuff", "/etcfoo", "/variable", "/data"]
)
def test_user_destinations_allowed(target: str) -> None:
    # `/etcfoo` and `/variable`: whole components are compared (the original compared
    # strings and refused them).
    assert user_target_problem(target) is None


@pytest.mark.parametrize(
    ("target", "refused"),
    [("/opt", True), ("/etc", True), ("/var", True), ("/etc/passwd", True),
     ("/etc/group", True), ("/etc/nsswitch.conf", True), ("/", True),
     ("/var/spool/slurmd", False), ("/etc/opt/cray/wlm_detect", False), ("/global", False)],
)  # fmt: skip
def test_site_destinations(target: str, refused: bool) -> None:
    assert (site_target_problem(target) is not None) is refused


@pytest.mark.parametrize("flags", ["rec", "slave", "private", "ro:rec"])
def test_users_may_not_use_site_flags(flags: str) -> None:
    with pytest.raises(VolumeError, match="is for site volumes only"):
        check_user_volume(parse_volume_spec(f"/a:/b:{flags}"), "--volume")


def test_users_may_use_ro_and_per_node_cache() -> None:
    check_user_volume(parse_volume_spec("/a:/b:ro"), "--volume")
    check_user_volume(parse_volume_spec("/a:/b:perNodeCache=size=1G"), "--volume")


def test_site_volume_checks_only_the_destination() -> None:
    check_site_volume(parse_volume_spec("/a:/b:rec:slave"), "u.conf:3")
    with pytest.raises(VolumeError, match=re.escape("u.conf:3: site volume /a:/etc")):
        check_site_volume(parse_volume_spec("/a:/etc"), "u.conf:3")


def test_signature_matches_the_original() -> None:
    assert (
        container_signature("testImage", "dmj", (), ())
        == '{"identifier":"testImage","user":"dmj","volMap":"","modules":""}'
    )
    volumes = parse_volume_specs("/d:/c;/a:/b;/q:/r;/a:/c:rec:perNodeCache=size=100M:ro")
    signature = container_signature("i", "u", volumes, ("mpich", "gpu"))
    assert signature == (
        '{"identifier":"i","user":"u","volMap":"/a:/b;/a:/c:ro:rec:perNodeCache='
        'size=104857600,bs=1048576,method=loop,fstype=xfs;/d:/c;/q:/r",'
        '"modules":"mpich,gpu,"}'
    )


@pytest.mark.parametrize(
    ("source", "refused", "read_only"),
    [("/", True, False), ("/proc", True, False), ("/proc/sys/kernel", True, False),
     ("/sys", True, False), ("/dev/shm", True, False), ("/etc", False, True),
     ("/etc/ssh", False, True), ("/tmp/data", False, False), ("/procfoo", False, False),
     ("/etcetera", False, False), ("/global/dev", False, False)],
)  # fmt: skip
def test_user_sources(source: str, refused: bool, read_only: bool) -> None:
    assert (user_source_problem(source) is not None) is refused
    assert user_source_read_only(source) is read_only
