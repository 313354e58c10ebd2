"""libmunge through ctypes against a real munged: what the gateway and clients rely on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shifter.munge.libmunge import Munge, MungeError, MungeStatus
from tests.services.munged import MungeDaemon, running_munged


def test_round_trip_carries_payload_and_identity(munged: MungeDaemon) -> None:
    munge = Munge(str(munged.socket))
    credential = munge.encode(b'{"authorized_locations": {}}')
    decoded = munge.decode(credential)
    assert decoded.payload == b'{"authorized_locations": {}}'
    assert (decoded.uid, decoded.gid) == (os.getuid(), os.getgid())


def test_empty_payload_is_the_unprivileged_request(munged: MungeDaemon) -> None:
    munge = Munge(str(munged.socket))
    assert munge.decode(munge.encode()).payload == b""


def test_credential_from_the_cli_decodes_with_its_uid(munged: MungeDaemon) -> None:
    credential = munged.encode(b"hello", uid=4242)
    decoded = Munge(str(munged.socket)).decode(credential)
    assert (decoded.payload, decoded.uid) == (b"hello", 4242)


def test_credential_from_the_library_decodes_with_the_cli(munged: MungeDaemon) -> None:
    credential = Munge(str(munged.socket)).encode(b"from-ctypes")
    assert munged.decode(credential).payload == b"from-ctypes"


def test_replayed_credential_is_refused(munged: MungeDaemon) -> None:
    munge = Munge(str(munged.socket))
    credential = munge.encode()
    munge.decode(credential)
    with pytest.raises(MungeError) as excinfo:
        munge.decode(credential)
    assert excinfo.value.status is MungeStatus.CRED_REPLAYED
    assert excinfo.value.is_credential_problem
    assert "Replayed credential" in str(excinfo.value)


def test_garbage_credential_is_refused(munged: MungeDaemon) -> None:
    with pytest.raises(MungeError) as excinfo:
        Munge(str(munged.socket)).decode("MUNGE:not-a-credential:")
    assert excinfo.value.status is MungeStatus.BAD_CRED
    assert excinfo.value.is_credential_problem


def test_credential_signed_with_another_key_is_refused(munged: MungeDaemon) -> None:
    with running_munged() as other:
        foreign = Munge(str(other.socket)).encode(b"x")
    with pytest.raises(MungeError) as excinfo:
        Munge(str(munged.socket)).decode(foreign)
    assert excinfo.value.is_credential_problem


def test_missing_daemon_names_the_socket(tmp_path: Path) -> None:
    socket = tmp_path / "no-such.socket"
    with pytest.raises(MungeError) as excinfo:
        Munge(str(socket)).encode()
    assert excinfo.value.status is MungeStatus.SOCKET
    assert not excinfo.value.is_credential_problem
    assert str(socket) in excinfo.value.describe()
