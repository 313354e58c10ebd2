"""Image records as the API shows them, ACL read checks, pull bodies, credentials."""

from __future__ import annotations

import json

import pytest

from shifter.gateway.authn import authorized_locations
from shifter.gateway.credentials import (
    CredentialVault,
    RegistryCredentials,
    credentials_for,
    parse_credential,
)
from shifter.gateway.lifecycle import final_acls
from shifter.gateway.records import ImageRecord, Requester, Status, parse_id_list, to_response
from shifter.gateway.settings import ServiceSettings

USER = Requester(uid=1, gid=1, user="u", groups=frozenset({1, 40}))


def record(**fields: object) -> ImageRecord:
    values: dict[str, object] = {"pk": 1, "system": "sys", "itype": "docker",
                                 "pulltag": "a:1", "status": Status.READY, "created": 0.0}
    values.update(fields)
    return ImageRecord(**values)  # type: ignore[arg-type]


def test_a_ready_record_has_exactly_the_original_fields() -> None:
    shown = to_response(record(image_id="ab" * 32, tags=("a:1",), env=("A=1",),
                               entry=["/bin/sh"], workdir="/w", last_pull=17,
                               status_message="Transferring image"))
    assert shown == {
        "id": "ab" * 32, "system": "sys", "itype": "docker", "tag": ["a:1"],
        "status": "READY", "userACL": [], "groupACL": [], "ENV": ["A=1"],
        "ENTRY": ["/bin/sh"], "WORKDIR": "/w", "LABELS": "MISSING", "last_pull": 17.0,
        "status_message": "Transferring image",
    }
    assert isinstance(shown["last_pull"], float)
    assert json.dumps(shown["last_pull"]) == "17.0"  # the C client ignores a JSON integer


def test_the_first_reply_to_a_pull_is_init_with_nothing_yet() -> None:
    shown = to_response(record(status=Status.PENDING, user_acl=(1, 5), last_pull=3.0,
                               status_message="PENDING"), USER, status=Status.INIT)
    assert shown == {
        "id": "MISSING", "system": "sys", "itype": "docker", "tag": [], "status": "INIT",
        "userACL": [1, 5], "groupACL": [], "ENV": "MISSING", "ENTRY": "MISSING",
        "WORKDIR": "MISSING", "LABELS": "MISSING", "last_pull": "MISSING",
        "status_message": "MISSING",
    }


def test_acl_lists_are_hidden_from_whoever_they_do_not_admit() -> None:
    shared = record(status=Status.PULLING, user_acl=(7, 8), group_acl=(9,))
    assert to_response(shared, USER)["userACL"] == []
    assert to_response(shared, Requester(uid=8, gid=8))["userACL"] == [7, 8]
    assert to_response(shared, Requester(uid=3, gid=9))["groupACL"] == [9]


# The original's read-check matrix (gateway contract §3.2), user uid=1 gid=1.
@pytest.mark.parametrize(
    ("fields", "who", "readable"),
    [
        ({}, USER, True),
        ({"private": True}, USER, True),
        ({"private": False, "user_acl": (2,)}, USER, True),
        ({"private": True, "user_acl": (1,)}, USER, True),
        ({"private": True, "user_acl": (1,)}, Requester(uid=2, gid=2), False),
        ({"private": True, "group_acl": (1,)}, Requester(uid=3, gid=1), True),
        ({"private": True, "group_acl": (1,)}, Requester(uid=3, gid=2), False),
        ({"private": True, "group_acl": (40,)}, USER, True),  # a supplementary group
    ],
)
def test_read_check(fields: dict[str, object], who: Requester, readable: bool) -> None:
    assert record(**fields).readable_by(who) is readable


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        (None, ()),
        ("", ()),
        ("1000,1001", (1000, 1001)),
        (" 5 , ,3,5", (3, 5)),
        ([7, "8"], (7, 8)),
        (12, (12,)),
    ],
)
def test_pull_body_id_lists(text: object, ids: tuple[int, ...]) -> None:
    assert parse_id_list(text, "allowed_uids") == ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1,x", "allowed_uids: 'x' is not a numeric id"),
        ("-1", "allowed_uids: '-1' is not a numeric id"),
        ("4294967295", "allowed_uids: 4294967295 is out of range"),
        ({"a": 1}, 'allowed_uids must be a comma-separated list of ids, such as "1000,1001"'),
        ([True], "allowed_uids: True is not a numeric id"),
    ],
)
def test_bad_pull_body_id_lists(text: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_id_list(text, "allowed_uids")
    assert str(caught.value) == message


def test_default_credentials_serve_only_the_default_location() -> None:
    sent = {"default": "d:1", "quay.io": "q:2"}
    assert credentials_for("quay.io", sent, "registry-1.docker.io") == RegistryCredentials("q", "2")
    assert credentials_for("registry-1.docker.io", sent, "registry-1.docker.io") == (
        RegistryCredentials("d", "1"))
    assert credentials_for("ghcr.io", sent, "registry-1.docker.io") is None
    named = {"default": "d:1", "registry-1.docker.io": "n:3"}
    assert credentials_for("registry-1.docker.io", named, "registry-1.docker.io") == (
        RegistryCredentials("n", "3"))


def test_credentials_keep_colons_and_hide_the_password() -> None:
    parsed = parse_credential("alice:pa:ss:word")
    assert parsed == RegistryCredentials("alice", "pa:ss:word")
    assert "pa:ss" not in repr(parsed)
    assert parse_credential("nocolon") is None
    assert parse_credential(":secret") is None


def test_the_vault_forgets() -> None:
    vault = CredentialVault()
    vault.put("ref", RegistryCredentials("a", "b"))
    assert vault.get("ref") == RegistryCredentials("a", "b")
    vault.discard("ref")
    assert vault.get("ref") is None


@pytest.mark.parametrize(
    ("payload", "locations"),
    [
        (b"", {}),
        (b'{"authorized_locations": {"default": "u:p", "x": 3}}', {"default": "u:p"}),
        (b"not json", {}),
        (b'{"other": 1}', {}),
        (b'["list"]', {}),
    ],
)
def test_credential_payloads(payload: bytes, locations: dict[str, str]) -> None:
    assert authorized_locations(payload) == locations


def test_final_acls() -> None:
    owner = Requester(uid=10, gid=10)
    stranger = Requester(uid=20, gid=20)
    existing = record(private=True, user_acl=(10,), group_acl=(5,))
    assert final_acls(None, True, (10, 11), (), owner) == ((10, 11), (), True)
    assert final_acls(existing, True, (10,), (), owner) == ((10,), (), True)  # owner edits
    assert final_acls(existing, True, (20,), (6,), stranger) == ((10, 20), (5, 6), True)
    assert final_acls(existing, False, (20,), (6,), stranger) == ((), (), False)


def test_service_settings_from_the_environment() -> None:
    settings = ServiceSettings.from_environ({"SHIFTER_IMAGEGW_LEASE_S": "6",
                                             "SHIFTER_IMAGEGW_MAX_ATTEMPTS": "5"})
    assert (settings.lease_s, settings.heartbeat_s, settings.max_attempts) == (6.0, 2.0, 5)
    assert ServiceSettings.from_environ({}) == ServiceSettings()
    with pytest.raises(Exception) as caught:
        ServiceSettings.from_environ({"SHIFTER_IMAGEGW_LEASE_S": "soon"})
    assert str(caught.value) == "key 'SHIFTER_IMAGEGW_LEASE_S': must be a number, not 'soon'"
