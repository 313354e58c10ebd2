"""Loop devices: the ioctls of /dev/loop-control and /dev/loopN (for the privileged path).

Skeleton: the constants are here so that setupRoot's loop handling lands in this module;
the attach/detach wrappers are written with setupRoot.
"""

from __future__ import annotations

import enum

LOOP_CONTROL = "/dev/loop-control"


class LoopIoctl(enum.IntEnum):
    """Request numbers of the loop driver (linux/loop.h)."""

    SET_FD = 0x4C00
    CLR_FD = 0x4C01
    SET_STATUS64 = 0x4C04
    GET_STATUS64 = 0x4C05
    CONFIGURE = 0x4C0A
    CTL_ADD = 0x4C80
    CTL_REMOVE = 0x4C81
    CTL_GET_FREE = 0x4C82


class LoopFlag(enum.IntFlag):
    """lo_flags of struct loop_info64."""

    READ_ONLY = 1
    AUTOCLEAR = 4
    PARTSCAN = 8
    DIRECT_IO = 16
