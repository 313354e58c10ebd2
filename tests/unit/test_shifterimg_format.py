"""What shifterimg prints, pinned: status lines, -v messages, the images table.

Workflow tools parse this output: Nextflow's Shifter wrapper runs
`shifterimg -v pull IMG | tail -n2 | head -n1 | awk '{print $6}'`, and older wrappers grep
the `"status": "READY"` line of the -v messages. Both are run here with the real tools.
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from shifter.cli.shifterimg_format import (
    Progress,
    image_rows,
    local_time,
    message_block,
    raw_message_block,
    status_line,
)
from shifter.gwclient.records import ImageRecord, parse_record

pytestmark = pytest.mark.unit

IMAGE_ID = "3b4f0c9a1e" + "7" * 54
STAMP = "2016-08-05T01:14:59"
READY_REPLY = {
    "id": IMAGE_ID, "system": "mycluster", "itype": "docker", "tag": ["ubuntu:16.04"],
    "status": "READY", "userACL": [], "groupACL": [], "ENV": ["PATH=/usr/bin:/bin"],
    "ENTRY": None, "WORKDIR": "MISSING", "LABELS": "MISSING", "last_pull": 1717600000.5,
    "status_message": "Transferring image",
}


@pytest.fixture
def utc() -> Iterator[None]:
    """Local time is UTC while the test runs (the outputs print local time)."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


def record(status: str, **fields: object) -> ImageRecord:
    return parse_record({**READY_REPLY, "status": status, **fields})


def test_status_line_is_the_originals() -> None:
    assert status_line(STAMP, "Pulling", "docker:dmjacobsen/mpitest:latest", "READY") == (
        "2016-08-05T01:14:59 Pulling Image: docker:dmjacobsen/mpitest:latest, status: READY"
    )


def test_local_time_format(utc: None) -> None:
    assert local_time(1470359699.9) == STAMP


def _progress(statuses: list[str], *, verbose: bool, tty: bool) -> str:
    out = io.StringIO()
    progress = Progress(out, "Pulling", "docker:ubuntu:16.04", verbose=verbose, tty=tty)
    for status in statuses:
        progress.show(record(status), STAMP)
    return out.getvalue()


LINE = "2016-08-05T01:14:59 Pulling Image: docker:ubuntu:16.04, status: "


def test_on_a_terminal_the_status_is_rewritten_in_place() -> None:
    assert _progress(["INIT", "PULLING", "READY"], verbose=False, tty=True) == (
        f"\r\x1b[2K{LINE}INIT\r\x1b[2K{LINE}PULLING\r\x1b[2K{LINE}READY\n"
    )


def test_in_a_pipe_each_new_status_gets_one_line() -> None:
    statuses = ["INIT", "PENDING", "PULLING", "PULLING", "PULLING", "CONVERSION", "READY"]
    assert _progress(statuses, verbose=False, tty=False) == (
        f"{LINE}INIT\n{LINE}PENDING\n{LINE}PULLING\n{LINE}CONVERSION\n{LINE}READY\n"
    )


def test_verbose_prints_every_status_and_a_blank_line_at_the_end() -> None:
    assert _progress(["PULLING", "PULLING", "FAILURE"], verbose=True, tty=True) == (
        f"{LINE}PULLING\n{LINE}PULLING\n{LINE}FAILURE\n\n"
    )


def test_verbose_does_not_repeat_a_status_when_no_new_reply_was_printed() -> None:
    # The gateway's hold on a failed pull: the same FAILURE reply, every 0.5 s, which the
    # reply printer shows once (its count stays at 1), then a retry that succeeds.
    out = io.StringIO()
    printed = iter([1, 1, 1, 2, 3])
    progress = Progress(out, "Pulling", "docker:ubuntu:16.04", verbose=True, tty=False,
                        replies=lambda: next(printed))  # fmt: skip
    for status in ["FAILURE", "FAILURE", "FAILURE", "PULLING", "READY"]:
        progress.show(record(status), STAMP)
    assert out.getvalue() == f"{LINE}FAILURE\n\n{LINE}PULLING\n{LINE}READY\n\n"


def test_an_interrupted_terminal_line_is_ended() -> None:
    out = io.StringIO()
    progress = Progress(out, "Importing", "custom:x:v1", verbose=False, tty=True)
    progress.show(record("HASHING"), STAMP)
    progress.interrupted()
    progress.interrupted()  # only once
    assert out.getvalue() == (
        "\r\x1b[2K2016-08-05T01:14:59 Importing Image: custom:x:v1, status: HASHING\n"
    )


READY_MESSAGE = f"""Message: {{
  "id": "{IMAGE_ID}",
  "system": "mycluster",
  "itype": "docker",
  "tag": [
    "ubuntu:16.04"
  ],
  "status": "READY",
  "userACL": [],
  "groupACL": [],
  "ENV": [
    "PATH=/usr/bin:/bin"
  ],
  "ENTRY": null,
  "WORKDIR": "MISSING",
  "LABELS": "MISSING",
  "last_pull": 1717600000.5,
  "status_message": "Transferring image"
}}"""


def test_message_block_is_pinned() -> None:
    assert message_block(READY_REPLY) == READY_MESSAGE


def test_message_keys_follow_the_original_order_whatever_the_gateway_sent() -> None:
    shuffled = dict(reversed(list(READY_REPLY.items())))
    assert message_block(shuffled) == READY_MESSAGE
    assert message_block({"message": "Not Found: x", "error": "image not found",
                          "status": 404}) == (
        'Message: {\n  "status": 404,\n  "error": "image not found",\n'
        '  "message": "Not Found: x"\n}'
    )
    assert message_block({"zeta": 1, "status": True, "alpha": 2}) == (
        'Message: {\n  "status": true,\n  "zeta": 1,\n  "alpha": 2\n}'
    )


def test_a_reply_that_is_not_json_is_printed_as_text() -> None:
    assert raw_message_block(b"<html>bad gateway</html>") == (
        "Message: <html>bad gateway</html>"
    )


def _verbose_pull_output(final: str) -> str:
    out = io.StringIO()
    progress = Progress(out, "Pulling", "docker:ubuntu:16.04", verbose=True, tty=False)
    for status in ["INIT", "PULLING", final]:
        out.write(message_block({**READY_REPLY, "status": status}) + "\n")
        progress.show(record(status), STAMP)
    return out.getvalue()


@pytest.mark.parametrize("final", ["READY", "FAILURE"])
def test_nextflow_reads_field_6_of_the_second_to_last_line(final: str) -> None:
    result = subprocess.run(
        ["sh", "-c", "tail -n2 | head -n1 | awk '{print $6}'"],
        input=_verbose_pull_output(final), capture_output=True, text=True, check=True,
    )
    assert result.stdout == f"{final}\n"


def test_older_wrappers_find_the_status_line_of_the_message() -> None:
    output = _verbose_pull_output("READY")
    result = subprocess.run(
        ["grep", '"status": "READY"'], input=output, capture_output=True, text=True,
        check=True,
    )
    assert result.stdout == '  "status": "READY",\n'
    # The awk those wrappers used: the value of the "status": line, quotes and commas gone.
    result = subprocess.run(
        ["awk", "-F:", '$0~/"status":/{gsub("[\\", ]","",$2);print $2}'],
        input=output, capture_output=True, text=True, check=True,
    )
    assert result.stdout.split() == ["INIT", "PULLING", "READY"]


def test_images_table_is_the_originals(utc: None) -> None:
    records = [
        record("READY", tag=["zlib:1", "alpine:3.19"]),
        record("READY", id="ab" * 32, tag="Ubuntu:22.04", system="longsystemname",
               itype="custom", last_pull=0.0),
        record("READY", tag=[]),  # no tag: nothing to name it by, no row
    ]
    assert image_rows(records) == [
        # %-10s does not cut a longer system name; "U" sorts before "a" (strcmp)
        "longsystemname custom     READY    ababababab   1970-01-01T00:00:00 Ubuntu:22.04"
        "                  ",
        "mycluster  docker     READY    3b4f0c9a1e   2024-06-05T15:06:40 alpine:3.19"
        "                   ",
        "mycluster  docker     READY    3b4f0c9a1e   2024-06-05T15:06:40 zlib:1"
        "                        ",
    ]


def test_images_rows_keep_the_originals_field_widths(utc: None) -> None:
    row = image_rows([record("READY")])[0]
    assert row[:10] == "mycluster " and row[10] == " "
    assert row[11:22] == "docker     "
    assert row[22:31] == "READY    "
    assert row[31:41] == IMAGE_ID[:10]
    assert row[41:44] == "   "
    assert len(row) == 44 + 19 + 1 + 30  # the tag is padded to 30
    assert row.split() == ["mycluster", "docker", "READY", "3b4f0c9a1e",
                           "2024-06-05T15:06:40", "ubuntu:16.04"]


def test_images_rows_show_missing_values_as_a_dash(utc: None) -> None:
    row = image_rows([parse_record({"status": "READY", "tag": ["x:1"]})])[0]
    assert row.split() == ["-", "-", "READY", "-", "-", "x:1"]
