"""The udiImage's OpenSSH: the host's Debian `sshd`, `ssh` and `ssh-keygen` with their whole
library closure, the C library and its loader included, under `/opt/udiImage`.

Why this way: the original built a static OpenSSH; Debian ships none, and the container's
C library may be any (a musl image, a static busybox with none at all). Each program keeps
the host's glibc, but its own: PT_INTERP is set to `/opt/udiImage/lib/<loader>` and DT_RPATH
to `/opt/udiImage/lib` (an RPATH, unlike a RUNPATH, also serves the libraries those load),
so nothing of the image's /lib is ever loaded into them. Both are absolute paths inside
the container, which is also what makes sshd's re-execution of itself (`rexec`, by its
absolute path `/opt/udiImage/sbin/sshd`) load the same loader again. Outside a container
the programs do not run (the paths do not exist on the host), by design.

The shells sshd starts for a login are the image's own programs, with the image's loader:
no LD_LIBRARY_PATH is set, so the bundle does not leak into them.
"""

from __future__ import annotations

import os
import shutil

from shifter.errors import ShifterError
from shifter.libprep.elf import ElfInfo, read_elf
from shifter.libprep.loader import Resolver
from shifter.libprep.prep import host_abi

ROOT = "/opt/udiImage"
LIB = f"{ROOT}/lib"
STAMP = ".shifter-bundle-sources"  # in lib: what the bundle was made from
PROGRAMS = (("/usr/sbin/sshd", "sbin"), ("/usr/bin/ssh", "bin"), ("/usr/bin/ssh-keygen", "bin"))


class BundleError(ShifterError):
    """The OpenSSH bundle cannot be built."""


def _interpreter(path: str) -> str:
    from shifter import proc

    result = proc.run(["patchelf", "--print-interpreter", path])
    return result.stdout.decode().strip()


def closure(programs: list[str], resolver: Resolver) -> dict[str, str]:
    """Every library (DT_NEEDED name: host path) the programs load, the libc family included."""
    found: dict[str, str] = {}
    queue: list[tuple[str, ElfInfo]] = [(path, read_elf(path)) for path in programs]
    while queue:
        needer, info = queue.pop(0)
        for name in info.needed:
            if name in found:
                continue
            path = resolver.find(name, needer, info, ())
            if path is None:
                raise BundleError(
                    f"{name}, needed by {needer}, is nowhere the loader would look",
                    hint="reinstall openssh-server and openssh-client (scripts/install.sh)",
                )
            found[name] = path
            queue.append((path, read_elf(path)))
    return found


def build(target: str) -> list[str]:
    """Write the bundle to `target` (the udiImage directory); return what was written
    (nothing when it was up to date).
    Nothing is redone when the host's programs and libraries are those it was made from
    (install.sh reruns); otherwise each part is rebuilt in a temporary sibling and renamed
    into place, libraries first. The `etc` templates are never overwritten."""
    from shifter import proc

    for program, _ in PROGRAMS:
        if not os.path.isfile(program):
            raise BundleError(f"{program} is missing", hint="run scripts/install.sh")
    loader = _interpreter(PROGRAMS[0][0])
    libraries = closure([program for program, _ in PROGRAMS], Resolver(host_abi()))
    written: list[str] = []
    os.makedirs(target, mode=0o755, exist_ok=True)
    stamp = _stamp([program for program, _ in PROGRAMS] + [loader, *libraries.values()])
    stamp_path = os.path.join(target, "lib", STAMP)
    if _read(stamp_path) == stamp:  # the same host files: nothing to redo (install reruns)
        write_templates(target)
        return []
    for part in ("lib", "sbin", "bin"):
        temp = os.path.join(target, f".{part}.new")
        if os.path.lexists(temp):
            shutil.rmtree(temp)
        os.mkdir(temp, 0o755)
        if part == "lib":
            shutil.copyfile(os.path.realpath(loader), os.path.join(temp, os.path.basename(loader)))
            os.chmod(os.path.join(temp, os.path.basename(loader)), 0o755)
            for name, path in libraries.items():
                if name == os.path.basename(loader):
                    continue  # libc's DT_NEEDED on the loader: copied above, executable
                shutil.copyfile(os.path.realpath(path), os.path.join(temp, name))
                os.chmod(os.path.join(temp, name), 0o644)
        for program, where in PROGRAMS:
            if where != part:
                continue
            dest = os.path.join(temp, os.path.basename(program))
            shutil.copyfile(program, dest)
            os.chmod(dest, 0o755)
            proc.run(["patchelf", "--set-interpreter", f"{LIB}/{os.path.basename(loader)}",
                      "--force-rpath", "--set-rpath", LIB, dest])  # fmt: skip
        if part == "lib":
            with open(os.path.join(temp, STAMP), "w", encoding="utf-8") as file:
                file.write(stamp)
        final = os.path.join(target, part)
        old = os.path.join(target, f".{part}.old")
        if os.path.lexists(old):
            shutil.rmtree(old)
        if os.path.lexists(final):
            os.rename(final, old)
        os.rename(temp, final)
        if os.path.lexists(old):
            shutil.rmtree(old)
        written.append(final)
    written.append(write_templates(target))
    return written


def _stamp(paths: list[str]) -> str:
    """What the bundle was made from: each host file's path, size and modification time."""
    lines = []
    for path in paths:
        info = os.stat(path)
        lines.append(f"{path} {info.st_size} {info.st_mtime_ns}\n")
    return "".join(lines)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except OSError:
        return None


SSHD_CONFIG = """\
# The job's sshd (setupRoot -s): runs as the job's user, inside the container.
# setupRoot writes the container's /etc/ssh/sshd_config from this file, replacing
# ToBeReplaced (AllowUsers, ListenAddress) and adding the per-container host key.
Port 1204
ListenAddress ToBeReplaced
AllowUsers ToBeReplaced
PermitRootLogin no
PubkeyAuthentication yes
AuthorizedKeysFile /etc/ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
HostbasedAuthentication no
UsePAM no
PidFile none
StrictModes yes
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel ERROR
# Sessions find the udiImage's ssh (an image may have none): ssh onwards from a node.
SetEnv PATH=/usr/local/bin:/usr/bin:/bin:/opt/udiImage/bin
"""

SSH_CONFIG = """\
# The job's ssh client configuration (the container's /etc/ssh/ssh_config).
# Host keys are made anew for each container, so they cannot be known in advance: the
# connection stays within the job's nodes, and its user authenticates with the job's key.
Host *
    Port 1204
    IdentityFile ~/.udiRoot/id_rsa.key
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
"""


def write_templates(target: str) -> str:
    """`etc/sshd_config` and `etc/ssh_config`, unless the site already has its own."""
    etc = os.path.join(target, "etc")
    os.makedirs(etc, mode=0o755, exist_ok=True)
    for name, text in (("sshd_config", SSHD_CONFIG), ("ssh_config", SSH_CONFIG)):
        path = os.path.join(etc, name)
        if not os.path.exists(path):
            with open(path, "w", encoding="utf-8") as file:
                file.write(text)
            os.chmod(path, 0o644)
    return etc
