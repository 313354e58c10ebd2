"""A failed pull's hint follows the gateway's reason, not one guess for every failure."""

from __future__ import annotations

import pytest

from shifter.gwclient.client import failure_hint


@pytest.mark.parametrize(
    ("reason", "hint_start"),
    [
        ("mksquashfs failed with exit status 1: Write failed because No space left on device",
         "the image gateway is out of disk space"),
        ("cannot connect to https://registry.example.org (connection refused)",
         "the registry could not be reached"),
        ("the examiner refused the image (exit status 3): found malware",
         "the site's examiner refused the image"),
        ("access denied: registry/private/app:1: UNAUTHORIZED: authentication required",
         "for a private registry, `shifterimg login LOCATION` first"),
        ("image not found: registry/org/app:nosuchtag", "check the image name and tag"),
        ("/home/u/x.sqsh holds 1 file(s) that may not be imported: /bin/su: setuid",
         "rebuild the image file"),
        ("something else entirely", "the gateway's log says more"),
    ],
)
def test_the_hint_follows_the_cause(reason: str, hint_start: str) -> None:
    assert failure_hint(reason).startswith(hint_start)
