"""Every system call shifter makes that the standard library does not wrap (or wraps without
saying what failed): mounts, namespaces, chroot/pivot_root, prctl, capabilities, loop devices.

Each wrapper checks the result and raises `SyscallError`, which names the operation, its
arguments and errno. Flags are named constants, never bare integers at call sites:
`enum.IntFlag` values, except in the modules on the path that enters a job's container
(namespace, caps), whose `libc.Constants` cost nothing to import. Nothing outside this
package calls these syscalls. Standard library only (plus the error hierarchy): the
`shifter` launch path imports it.
"""
