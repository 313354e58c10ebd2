"""Entering a container that setupRoot built (the job's), instead of building one.

When `<udiMount>/var/shifterConfig.json`, as the host's mount namespace shows it, is the
signature of the user's request (image id, user, volumes, modules), `shifter` enters that
tree: new user and mount namespaces (the user namespace maps only the caller's own uid and
gid, which gives the right to chroot and nothing else), a chroot into udiMount, then the
usual privilege drop, check and exec (start.py). The tree is root's and already complete;
nothing is mounted.

The mount namespace is a copy of the host's, which the job's processes keep: unsetupRoot
detaching the tree from the host (lazily) does not touch it, so a process still running
at the end of the job still sees its whole container (in the host's namespace, a lazy
detach disconnects every submount of the tree: the image would vanish from under it),
and the loop devices detach when the last such process exits. A new job's tree at
udiMount is never theirs.

Two ways to decide, the same answer:

- **fast** (`try_enter`, tried first): from the enter record (signature.py) alone, when
  udiRoot.conf is the very file the container was built from (same path, device, inode,
  size, mtime and ctime: then everything setupRoot derived from it still holds) and the
  request names the image exactly `id:ID` and states the volumes and modules as setupRoot
  got them. It loads neither udiRoot.conf nor the image's `.meta` nor any heavy module.
- **full** (launch.py): after every decision of an ordinary launch, the computed signature
  is compared with the file (`open_matching`). This catches every other way of saying the
  same thing (`docker:` names, volumes written differently, `--verbose`, ...).

Either way the tree is opened once, as a directory descriptor, and everything is checked
and entered through it: a job's tree replaced between the check and the chroot cannot be
entered by mistake.
"""

from __future__ import annotations

import os

from shifter.runtime.rootfs.signature import (
    SIGNATURE_FILE,
    EnterRecord,
    file_stamp,
    read_record,
    read_root_file,
)

TYPE_CHECKING = False  # the enter path: `typing` and `collections.abc` cost start-up time
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

# Also in shifter.runtime.config.load (which costs milliseconds to import); a test keeps them equal.
DEFAULT_CONFIG_PATH = "/etc/shifter/udiRoot.conf"
CONFIG_ENV = "SHIFTER_CONFIG"
CONFIG_LIMIT = 1024 * 1024
UDI_MOUNT_KEY = "udiMount"
WHITESPACE = " \t\n\r\v\f"  # what the config reader trims (C's isspace)
# Options the fast way handles; anything else (--verbose, --debug) takes the full way.
FAST_OPTIONS = frozenset(
    ("image", "volume", "module", "entrypoint", "workdir", "env", "env_file", "clearenv", "n")
)


def open_root(udi_mount: str) -> int | None:
    """An O_PATH descriptor of the tree at udiMount (what is mounted there now)."""
    try:
        return os.open(udi_mount, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None


def signature_matches(root_fd: int, signature: str) -> bool:
    """The tree's shifterConfig.json is exactly `signature` and a newline, written by root."""
    expected = (signature + "\n").encode()
    found = read_root_file(SIGNATURE_FILE, len(expected) + 1, dir_fd=root_fd)
    return found is not None and found[0] == expected


def open_matching(udi_mount: str, signature: str) -> int | None:
    """The full way: a descriptor of the setupRoot tree at udiMount when its signature is
    `signature` (the caller enters it with `enter_root`), else None."""
    root_fd = open_root(udi_mount)
    if root_fd is None:
        return None
    if signature_matches(root_fd, signature) and read_record(root_fd) is not None:
        return root_fd  # a private container never has a record: only setupRoot's match
    os.close(root_fd)
    return None


def enter_root(root_fd: int) -> None:
    """Move this process into the tree `root_fd`: the job's user namespace (jobns.py) or a
    new one, a mount namespace, chroot."""
    from shifter.runtime.identity.jobns import join_pinned
    from shifter.sys.namespace import Namespace, enter_user_namespace, unshare
    from shifter.sys.root import chroot_cwd

    # The working directory first: the new mount namespace translates it (not an open
    # descriptor) to its own copy of the tree, which the chroot then makes the root.
    os.fchdir(root_fd)
    uid, gid = os.getuid(), os.getgid()
    try:
        joined = join_pinned(root_fd, uid, gid)  # the job's namespace, shared by its ranks
    finally:
        os.close(root_fd)
    if joined:
        unshare(Namespace.NEWNS)
    else:
        enter_user_namespace(uid, gid, Namespace.NEWNS)
    chroot_cwd()


def _config_file(environ: Mapping[str, str]) -> tuple[str, os.stat_result, str] | None:
    """udiRoot.conf's path, stat and text, when it is a safe file (the full way reports
    anything else)."""
    path = environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH
    found = read_root_file(path, CONFIG_LIMIT + 1, follow=True)
    if found is None or len(found[0]) != found[1].st_size or len(found[0]) > CONFIG_LIMIT:
        return None
    try:
        return path, found[1], found[0].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _udi_mount(text: str) -> str | None:
    """Where to look for the record: the value of the config's last `udiMount=` line.

    Only a locator, not a parser (the full one, `shifter.keyvalue`, costs the fast way
    three more modules): the record holds the udiMount the full parser found, and the fast
    way goes on only when both agree. A value continued on the next line gives None.
    """
    value = None
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        key, delimiter, rest = line.partition("=")
        if delimiter and key.strip(WHITESPACE) == UDI_MOUNT_KEY:
            value = rest.strip(WHITESPACE)
            if value.endswith("\\"):
                return None
    return value


def _matches(
    record: EnterRecord,
    options: Mapping[str, Any],
    environ: Mapping[str, str],
) -> tuple[str, str | None] | None:
    """The request's image text and SHIFTER_IMAGEREQUEST when it is the record's request."""
    from shifter.runtime.request.selection import (
        choose_modules,
        choose_volumes,
        module_names,
        pick_image,
    )

    if record.uid != os.getuid():
        return None
    picked = pick_image(options.get("image"), environ)
    if picked is None or picked[0] != f"id:{record.image_id}":
        return None
    volumes, _ = choose_volumes(options.get("volume", ()), environ)
    if volumes != record.volume_text:
        return None
    selection, _ = choose_modules(options.get("module"), environ)
    if module_names(selection, record.default_modules) != list(record.modules):
        return None
    return picked[0], picked[2]


def try_enter(
    options: Mapping[str, Any], command: Sequence[str], environ: Mapping[str, str]
) -> int | None:
    """The fast way in. None: not this way (the caller launches the full way, which may
    still enter). Otherwise it does not return unless the command cannot be exec'd (the
    shell's status); errors after the decision raise `ShifterError` as a launch does."""
    uid, gid = os.getuid(), os.getgid()
    if uid == 0 or gid == 0 or not FAST_OPTIONS.issuperset(options):
        return None
    found = _config_file(environ)
    if found is None:
        return None
    config_path, config_info, text = found
    udi_mount = _udi_mount(text)
    root_fd = open_root(udi_mount) if udi_mount else None
    if root_fd is None:
        return None
    try:
        read = read_record(root_fd)
        record = read[0] if read is not None else None
        matched = (
            record is not None
            and record.config_path == config_path
            and tuple(record.config_stamp) == file_stamp(config_info)
            and record.udi_mount == udi_mount
            and _matches(record, options, environ)
        )
        if not matched or not signature_matches(root_fd, record.signature):
            os.close(root_fd)
            return None
    except BaseException:
        os.close(root_fd)
        raise
    return _enter(record, matched[1], root_fd, options, command, environ)


def _enter(
    record: EnterRecord,
    request: str | None,
    root_fd: int,
    options: Mapping[str, Any],
    command: Sequence[str],
    environ: Mapping[str, str],
) -> int:
    from shifter.runtime import start
    from shifter.runtime.identity import privileges
    from shifter.runtime.request.command import container_argv, plan_workdir
    from shifter.runtime.site.environment import (
        build_environment,
        host_environment,
        parse_env_option,
        read_env_file,
    )

    try:
        entrypoint, workdir_option = options.get("entrypoint"), options.get("workdir")
        argv = container_argv(command, entrypoint, record.entry, record.cmd)
        try:
            cwd: str | None = os.getcwd()
        except OSError:
            cwd = None
        workdir = plan_workdir(workdir_option, cwd, record.workdir)
        env_file = options.get("env_file")
        env = build_environment(
            {} if options.get("clearenv") else host_environment(environ),
            request=request,
            image_id=record.image_id,
            image_env=record.image_env,
            env_file=read_env_file(env_file) if env_file else (),
            env_options=[parse_env_option(t) for t in options.get("env", ())],
            site_steps=record.site_env,
        )
        uid, gid = os.getuid(), os.getgid()
        groups = privileges.expected_groups(os.getgroups(), (gid,), privileges.overflow_gid())
        start.prepare(record.userhooks)
        verdicts = None
        if record.userhooks:
            from shifter.runtime.identity.userdir import open_user_dir
            from shifter.runtime.site.hooks import HookVerdicts

            verdicts = HookVerdicts.for_container(
                open_user_dir(uid), record.image_id, record.signature
            )
    except BaseException:
        os.close(root_fd)
        raise
    enter_root(root_fd)
    return start.run_in_container(
        uid=uid,
        gid=gid,
        groups=groups,
        workdir=workdir,
        userhooks=record.userhooks,
        argv=argv,
        env=env,
        hook_verdicts=verdicts,
    )
