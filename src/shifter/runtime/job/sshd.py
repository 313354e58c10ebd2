"""The job's sshd (setupRoot `-s PUBKEY`): inside the container, as the job's user.

setupRoot, as root, checks the public key (user input: one OpenSSH public key line, no
options), reads the udiImage's `etc/sshd_config` and `etc/ssh_config` (libprep/sshbundle.py
writes the defaults; a site edits them, the port among others) and plans, in the
container's own /etc/ssh (the container's tmpfs, never the user's home):

- `sshd_config`: the template with `AllowUsers` the job's user and `ListenAddress` the
  address the node's own name resolves to, and the per-container host key;
- `ssh_host_ed25519_key` (+ `.pub`): made now with the host's ssh-keygen, owned by the user
  (sshd reads it as the user), 0600;
- `authorized_keys`: the job's public key only, root's, 0644;
- `ssh_config`: the client side (port, the job's key `~/.udiRoot/id_rsa.key`, host keys
  not checked: they are new in every container).

Once the tree is complete, `start` forks a child that starts a session, chroots into
udiMount, drops every privilege (privileges.py: the user's groups, no capabilities,
no_new_privs) and execs `/opt/udiImage/sbin/sshd -D -e` (OpenSSH daemonizes *before* it
binds, so its exit status says nothing: -D keeps the pid). setupRoot returns once that pid
holds a listening socket on the address and port (/proc/net/tcp), and fails with sshd's
own words if it exits first (a port already taken).

`stop` (every teardown, before anything is detached) kills every process whose root is
this udiMount in this mount namespace: the sshd and all it started. Processes that entered
with `shifter` have their own namespaces and keep their tree, as documented.
"""

from __future__ import annotations

import os
from _signal import SIGKILL  # `signal` wraps it in enums, which cost setupRoot ~3 ms

from shifter.errors import ShifterError
from shifter.runtime.config.load import UdiRootConfig
from shifter.runtime.identity.user import Identity
from shifter.runtime.rootfs.udiimage import installed_udi_image

TYPE_CHECKING = False  # setupRoot imports this module on every run: no `typing`, no `re`
if TYPE_CHECKING:
    from typing import IO

SSHD = "/opt/udiImage/sbin/sshd"
KEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
             "ecdsa-sha2-nistp521")  # fmt: skip
PUBKEY = r"(?P<type>[a-z0-9-]+) (?P<blob>[A-Za-z0-9+/]+={0,2})(?: [ -~]{0,200})?"
MAX_KEY = 16384
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"
STOP_ROUNDS = 20
START_WAIT_S = 30.0


class SshdError(ShifterError):
    """The job's sshd cannot be set up or started."""


def udi_image_dir(config: UdiRootConfig) -> str:
    """optUdiImage, or the installation's own udiImage directory when it is unset."""
    return config.opt_udi_image or installed_udi_image()


def check_pubkey(text: str) -> str:
    """The one public key line of `-s`, trimmed; `SshdError` for anything else."""
    import re

    key = text.strip()
    match = re.fullmatch(PUBKEY, key)
    if len(key) > MAX_KEY or match is None or match["type"] not in KEY_TYPES:
        raise SshdError(
            "-s: not an OpenSSH public key line (TYPE BASE64 [COMMENT], no options)",
            hint="pass the content of ~/.udiRoot/id_rsa.key.pub",
        )
    return key


def node_address() -> str:
    """The IPv4 address this node's own name resolves to."""
    import socket

    name = os.uname().nodename
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0]
    except (OSError, IndexError):
        raise SshdError(
            f"the node's name {name} does not resolve to an IPv4 address",
            hint="map it in /etc/hosts or DNS: the job's sshd listens on that address",
        ) from None


def _template(directory: str, name: str) -> str:
    path = os.path.join(directory, "etc", name)
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError as error:
        raise SshdError(
            f"cannot read {path}: {error.strerror}",
            hint="install the udiImage's OpenSSH (shifter-udiimage) or set optUdiImage",
        ) from None


def sshd_config(template: str, user: str, address: str) -> str:
    lines = []
    for raw in template.splitlines():
        line = raw.strip()
        if line == "AllowUsers ToBeReplaced":
            line = f"AllowUsers {user}"
        elif line == "ListenAddress ToBeReplaced":
            line = f"ListenAddress {address}"
        lines.append(line)
    lines.append(f"HostKey /{HOST_KEY}")
    return "\n".join(lines) + "\n"


def plan_files(config: UdiRootConfig, identity: Identity, pubkey: str
               ) -> list[tuple[str, bytes, int, int]]:  # fmt: skip
    """(path relative to the container's root, content, mode, owner uid) of each file."""
    import shutil
    import tempfile

    from shifter import proc

    directory = udi_image_dir(config)
    if not os.access(os.path.join(directory, SSHD.removeprefix("/opt/udiImage/")), os.X_OK):
        raise SshdError(
            f"{directory} has no sbin/sshd",
            hint="run shifter-udiimage (scripts/install.sh), or point optUdiImage at a "
            "udiImage directory that has it",
        )
    user = identity.user
    server = sshd_config(_template(directory, "sshd_config"), user.name, node_address())
    client = _template(directory, "ssh_config")
    temp = tempfile.mkdtemp(prefix="shifter-hostkey-")
    try:
        key = os.path.join(temp, "key")
        proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", key])
        with open(key, "rb") as file:
            private = file.read()
        with open(key + ".pub", "rb") as file:
            public = file.read()
    finally:
        shutil.rmtree(temp)
    return [
        ("etc/ssh/sshd_config", server.encode(), 0o444, 0),
        ("etc/ssh/ssh_config", client.encode(), 0o644, 0),
        ("etc/ssh/authorized_keys", (pubkey + "\n").encode(), 0o644, 0),
        (HOST_KEY, private, 0o600, user.uid),
        (HOST_KEY + ".pub", public, 0o644, user.uid),
    ]


def start(config: UdiRootConfig, identity: Identity) -> int:
    """Start the sshd in the built container as the user (see the module docstring);
    returns its pid once it listens."""
    import tempfile

    address, port = _listen_on(config)
    # sshd's own words (a bind failure) land in a file only root can open, unlinked at once.
    with tempfile.TemporaryFile(prefix="shifter-sshd-") as log:
        pid = _fork_sshd(config, identity, log.fileno())
        _wait_listening(pid, address, port, log)
    return pid


def _fork_sshd(config: UdiRootConfig, identity: Identity, log_fd: int) -> int:
    from shifter.runtime.identity import privileges
    from shifter.sys.root import chroot

    user = identity.user
    pid = os.fork()
    if pid == 0:  # the child: nothing may return from here
        try:
            os.setsid()  # outlives setupRoot and its caller's process group
            null = os.open("/dev/null", os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            chroot(config.udi_mount)
            os.chdir("/")
            privileges.drop_privileges(user.uid, user.gid, identity.groups)
            privileges.verify_dropped(user.uid, user.gid, identity.groups)
            env = {"PATH": "/usr/bin:/bin", "HOME": "/", "USER": user.name}
            # -D: no daemon, so this pid is the sshd's; -e: errors to the log file.
            os.execve(SSHD, [SSHD, "-D", "-e", "-f", "/etc/ssh/sshd_config"], env)
        except BaseException as error:
            os.write(2, f"{error}\n".encode(errors="replace"))
        os._exit(127)
    return pid


def _listen_on(config: UdiRootConfig) -> tuple[str, int]:
    """The address and port of the container's sshd_config (written by `plan_files`)."""
    address, port = "", 22
    with open(os.path.join(config.udi_mount, "etc/ssh/sshd_config"), encoding="utf-8") as file:
        for line in file:
            words = line.split()
            if len(words) == 2 and words[0].lower() == "port" and words[1].isdigit():
                port = int(words[1])
            elif len(words) == 2 and words[0].lower() == "listenaddress":
                address = words[1]
    return address, port


def _listening_inodes(address: str, port: int) -> set[str]:
    """The socket inodes listening on address:port (IPv4), from /proc/net/tcp."""
    import socket

    wanted = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    found = set()
    with open("/proc/net/tcp", encoding="ascii") as file:
        next(file)
        for line in file:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: TCP_LISTEN
                found.add(fields[9])
    return found


def _owns_socket(pid: int, inodes: set[str]) -> bool:
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


def _wait_listening(pid: int, address: str, port: int, log: IO[bytes]) -> None:
    """Until the sshd `pid` listens on address:port; `SshdError` if it exits first (or
    has not listened after START_WAIT_S, then it is killed)."""
    import time

    deadline = time.monotonic() + START_WAIT_S
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            log.seek(0)
            said = log.read().decode(errors="replace").strip().splitlines()
            raise SshdError(
                f"the job's sshd did not start (exit {os.waitstatus_to_exitcode(status)}): "
                f"{' / '.join(said[-3:]) or 'no message'}",
                hint=f"is port {port} on {address} taken on this node? (the udiImage's "
                "sshd_config sets the port)",
            )
        if _owns_socket(pid, _listening_inodes(address, port)):
            return
        if time.monotonic() > deadline:
            os.kill(pid, SIGKILL)
            os.waitpid(pid, 0)
            raise SshdError(f"the job's sshd did not listen on {address}:{port} within "
                            f"{START_WAIT_S:.0f} s", hint="see the node's load")  # fmt: skip
        time.sleep(0.01)


def container_processes(config: UdiRootConfig) -> list[int]:
    """The processes whose root directory is udiMount, in this mount namespace."""
    own = os.readlink("/proc/self/ns/mnt")
    root = os.path.normpath(config.udi_mount)
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/ns/mnt") != own:
                continue
            if os.readlink(f"/proc/{name}/root") == root:
                found.append(int(name))
        except OSError:
            continue  # gone meanwhile, or a kernel thread
    return found


def stop(config: UdiRootConfig) -> list[int]:
    """Kill the sshd and everything it started; returns the pids killed."""
    killed: list[int] = []
    for _ in range(STOP_ROUNDS):  # a fork between listing and killing shows next round
        pids = [pid for pid in container_processes(config) if pid not in killed]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, SIGKILL)
            except ProcessLookupError:
                continue
            killed.append(pid)
    return killed
