"""The values of libmunge.py that only decoding and errors need: importing them costs
`enum` and `collections`, which a client minting credentials does without."""

from __future__ import annotations

import enum
from collections import namedtuple


class MungeStatus(enum.IntEnum):
    """munge_err_t values from munge.h (stable since MUNGE 0.5)."""

    SUCCESS = 0
    SNAFU = 1
    BAD_ARG = 2
    BAD_LENGTH = 3
    OVERFLOW = 4
    NO_MEMORY = 5
    SOCKET = 6
    TIMEOUT = 7
    BAD_CRED = 8
    BAD_VERSION = 9
    BAD_CIPHER = 10
    BAD_MAC = 11
    BAD_ZIP = 12
    BAD_REALM = 13
    CRED_INVALID = 14
    CRED_EXPIRED = 15
    CRED_REWOUND = 16
    CRED_REPLAYED = 17
    CRED_UNAUTHORIZED = 18


def status_of(code: int) -> MungeStatus:
    """The status named by a munge_err_t, SNAFU for a value this module does not know."""
    try:
        return MungeStatus(code)
    except ValueError:
        return MungeStatus.SNAFU


# A named tuple, not a dataclass: `dataclasses` costs a `docker:` launch ~5 ms to import.
class DecodedCredential(namedtuple("DecodedCredential", "payload uid gid")):
    """What a verified credential carries: its payload and the encoding process's ids."""

    __slots__ = ()
