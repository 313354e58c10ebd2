"""Image records from the gateway's JSON: the contract's examples, MISSING, old shapes."""

from __future__ import annotations

import pytest

from shifter.gwclient.errors import GatewayReplyError
from shifter.gwclient.records import parse_list, parse_record

pytestmark = pytest.mark.unit

LOOKUP_REPLY = {
    "id": "3b4f0c" + "0" * 56 + "e9", "system": "mycluster", "itype": "docker",
    "tag": ["ubuntu:16.04"], "status": "READY", "userACL": [], "groupACL": [],
    "ENV": ["PATH=/usr/local/sbin:/usr/bin"], "ENTRY": None, "WORKDIR": "MISSING",
    "LABELS": "MISSING", "last_pull": 1717600000.123, "status_message": "Transferring image",
}
FIRST_PULL_REPLY = {
    "id": "MISSING", "system": "mycluster", "itype": "docker", "tag": [], "status": "INIT",
    "userACL": [1000, 1001, 500], "groupACL": [1002, 500], "ENV": "MISSING",
    "ENTRY": "MISSING", "WORKDIR": "MISSING", "LABELS": "MISSING", "last_pull": "MISSING",
    "status_message": "MISSING",
}


def test_a_ready_record() -> None:
    record = parse_record(LOOKUP_REPLY)
    assert record.id == LOOKUP_REPLY["id"]
    assert (record.system, record.itype, record.status) == ("mycluster", "docker", "READY")
    assert record.tags == ("ubuntu:16.04",)
    assert record.env == ("PATH=/usr/local/sbin:/usr/bin",)
    assert record.entry is None and record.workdir is None and record.labels is None
    assert record.last_pull == 1717600000.123
    assert record.status_message == "Transferring image"
    assert record.ready and not record.in_progress
    assert dict(record.raw) == LOOKUP_REPLY


def test_missing_fields_of_a_fresh_pull_record_are_none() -> None:
    record = parse_record(FIRST_PULL_REPLY)
    assert record.id is None and record.last_pull is None and record.status_message is None
    assert record.env is None and record.entry is None and record.tags == ()
    assert record.user_acl == (1000, 1001, 500) and record.group_acl == (1002, 500)
    assert record.in_progress and not record.ready


def test_old_gateway_shapes_are_accepted() -> None:
    record = parse_record(
        {"status": "SUCCESS", "tag": "ubuntu:16.04", "last_pull": 1717600000,
         "userACL": ["1000", True, "x"], "ENTRY": "/bin/sh", "LABELS": {"a": "b"}}
    )
    assert record.tags == ("ubuntu:16.04",)
    assert record.last_pull == 1717600000.0  # an integer: the C client showed 1970 here
    assert record.user_acl == (1000,)  # a JSON true is not uid 1
    assert record.entry == "/bin/sh" and dict(record.labels or {}) == {"a": "b"}
    assert record.ready  # SUCCESS is the original's old name for READY


@pytest.mark.parametrize(
    "status", ["MISSING", "INIT", "PENDING", "PULLING", "EXAMINATION", "CONVERSION",
               "TRANSFER", "HASHING"],
)
def test_in_progress_statuses_keep_a_pull_polling(status: str) -> None:
    assert parse_record({"status": status}).in_progress


@pytest.mark.parametrize("status", ["READY", "FAILURE", "EXPIRED", "EXPIRING", "WHATEVER"])
def test_other_statuses_end_the_polling(status: str) -> None:
    assert not parse_record({"status": status}).in_progress


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "list where an image record"),
        ({"id": "x"}, "without a status"),
        ({"status": 404}, "without a status"),
    ],
)
def test_malformed_records_are_refused(value: object, message: str) -> None:
    with pytest.raises(GatewayReplyError, match=message):
        parse_record(value)


def test_a_list_reply() -> None:
    records = parse_list({"list": [LOOKUP_REPLY, FIRST_PULL_REPLY]})
    assert [r.status for r in records] == ["READY", "INIT"]
    assert parse_list({"data": []}) == []
    assert parse_list({"list": []}) == []
    with pytest.raises(GatewayReplyError, match='without a "list" array'):
        parse_list({"images": []})
