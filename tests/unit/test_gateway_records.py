"""Image records as the API shows them, ACL read checks, pull bodies, credentials."""

from __future__ import annotations

import json

import pytest

from shifter.gateway.access import ImageAccess, union_access
from shifter.gateway.authn import authorized_locations
from shifter.gateway.credentials import (
    CredentialVault,
    RegistryCredentials,
    credentials_for,
    parse_credential,
)
from shifter.gateway.lifecycle import Outcome, tag_access_after
from shifter.gateway.records import (
    ImageRecord,
    Requester,
    Status,
    TagAccess,
    listed_views,
    parse_id_list,
    tag_view,
    to_response,
)
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


def _asked(private: bool, users: tuple[int, ...], groups: tuple[int, ...],
           who: Requester) -> Outcome:
    return Outcome(image_id="ab" * 32, private=private, user_acl=users, group_acl=groups,
                   requester=who)


def test_tag_access_after_a_pull() -> None:
    owner = Requester(uid=10, gid=10)
    stranger = Requester(uid=20, gid=20)
    current = TagAccess(True, (10,), (5,))
    assert tag_access_after(None, _asked(True, (10, 11), (), owner), None) == TagAccess(
        True, (10, 11), ())
    # Someone the tag admits sets its ACL; a stranger who proved registry access adds theirs.
    assert tag_access_after(current, _asked(True, (10,), (), owner), None) == TagAccess(
        True, (10,), ())
    assert tag_access_after(current, _asked(True, (20,), (6,), stranger), None) == TagAccess(
        True, (10, 20), (5, 6))
    assert tag_access_after(current, _asked(False, (), (), stranger), None) == TagAccess()
    # A custom tag keeps its first importer; one from before owners stays the admins'.
    assert tag_access_after(None, _asked(False, (), (), owner), 10).owner == 10
    assert tag_access_after(TagAccess(owner=10), _asked(False, (), (), stranger), 20).owner == 10
    assert tag_access_after(TagAccess(), _asked(False, (), (), stranger), 20).owner is None


def test_the_files_of_an_image_admit_everyone_any_tag_admits() -> None:
    one, two = ImageAccess(True, (1,), (7,)), ImageAccess(True, (2,))
    assert union_access([]) is None
    assert union_access([one, two]) == ImageAccess(True, (1, 2), (7,))
    assert union_access([one, ImageAccess.PUBLIC, two]) == ImageAccess.PUBLIC
    assert ImageAccess.PUBLIC.covers(one) and not one.covers(ImageAccess.PUBLIC)
    assert union_access([one, two]).covers(one) and not one.covers(two)  # type: ignore[union-attr]


def test_a_tag_shows_its_own_access_and_only_tags_the_viewer_may_use() -> None:
    private = TagAccess(True, (USER.uid,))
    stranger = Requester(uid=99, gid=99)
    shared = record(image_id="ab" * 32, tags=("pub:1", "secret:1"), private=False,
                    tag_access=(("pub:1", TagAccess()), ("secret:1", private)))
    secret = tag_view(shared, "secret:1")
    assert (secret.readable_by(USER), secret.readable_by(stranger)) == (True, False)
    assert tag_view(shared, "pub:1").readable_by(stranger)
    assert to_response(tag_view(shared, "pub:1"), stranger)["tag"] == ["pub:1"]
    assert to_response(secret, USER)["tag"] == ["pub:1", "secret:1"]
    assert to_response(secret, USER)["userACL"] == [USER.uid]
    assert [view.tags for view in listed_views(shared, stranger)] == [("pub:1",)]
    assert [(view.tags, view.user_acl) for view in listed_views(shared, USER)] == [
        (("pub:1",), ()), (("secret:1",), (USER.uid,))]


def test_a_ready_record_without_an_entrypoint_says_missing() -> None:
    assert to_response(record(image_id="ab" * 32, entry=None))["ENTRY"] == "MISSING"


def test_service_settings_from_the_environment() -> None:
    settings = ServiceSettings.from_environ({"SHIFTER_IMAGEGW_LEASE_S": "6",
                                             "SHIFTER_IMAGEGW_MAX_ATTEMPTS": "5"})
    assert (settings.lease_s, settings.heartbeat_s, settings.max_attempts) == (6.0, 2.0, 5)
    assert ServiceSettings.from_environ({}) == ServiceSettings()
    with pytest.raises(Exception) as caught:
        ServiceSettings.from_environ({"SHIFTER_IMAGEGW_LEASE_S": "soon"})
    assert str(caught.value) == "key 'SHIFTER_IMAGEGW_LEASE_S': must be a number, not 'soon'"
