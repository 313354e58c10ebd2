"""Every system call shifter makes that the standard library does not wrap (or wraps without
saying what failed): mounts, namespaces, chroot/pivot_root, prctl, capabilities, loop devices.

Each wrapper checks the result and raises `SyscallError`, which names the operation, its
arguments and errno. Flags are named constants, never bare integers at call sites:
`libc.Constants` (plain ints, named in messages), which cost nothing to import, in every
module a `shifter` launch uses; `enum.IntFlag` only in setupRoot's loop devices. Nothing
outside this package calls these syscalls. Standard library only (plus the error hierarchy): the
`shifter` launch path imports it.
"""
