"""setupRoot `-s PUBKEY`: the job's sshd, the udiImage's OpenSSH (libprep/sshbundle.py),
runs inside the container as the job's user; `ssh` from inside the container lands inside
it again, with the job's key only; unsetupRoot stops it.

The images: the runtime fixtures' busybox image (a static busybox: the bundle brings its
own C library and loader) and a Debian one (the host's Debian dash, coreutils and glibc: a
C library of the image's own, which the bundle must not mix with its own). Each test's
udiImage is a copy of the installed one whose sshd_config listens on a free port, so tests
never collide with a real job's 1204.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.runtime_fixtures import (
    OTHER_USER,
    TEST_USER,
    RuntimeImages,
    Site,
    _copy_with_libraries,
    gid_of,
    image_id,
    output_of,
    uid_of,
)
from tests.services.setuproot_fixtures import RootSite, make_root_site

pytestmark = pytest.mark.root

INSTALLED = Path(sys.prefix) / "lib" / "shifter" / "udiImage"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _node_address() -> str:
    return socket.getaddrinfo(os.uname().nodename, None, socket.AF_INET)[0][4][0]


@pytest.fixture
def keys() -> Iterator[Path]:
    """The job user's key pair, made as that user, in a directory only it can read."""
    path = Path(tempfile.mkdtemp(prefix="shifter-sshd-keys-"))
    os.chown(path, uid_of(TEST_USER), gid_of(TEST_USER))
    path.chmod(0o755)
    subprocess.run(["runuser", "-u", TEST_USER, "--", "ssh-keygen", "-q", "-t", "rsa", "-N", "",
                    "-f", str(path / "id_rsa.key")], check=True)  # fmt: skip
    yield path
    shutil.rmtree(path)


@pytest.fixture
def sshd_site(runtime_site: Site, keys: Path) -> Iterator[tuple[RootSite, int, Path]]:
    if not (INSTALLED / "sbin" / "sshd").exists():
        pytest.fail("the udiImage's OpenSSH is missing: run scripts/install.sh")
    port = _free_port()
    udi_image = runtime_site.root / "udiImage"
    shutil.copytree(INSTALLED, udi_image, symlinks=True)
    config = udi_image / "etc" / "sshd_config"
    config.write_text(config.read_text().replace("Port 1204", f"Port {port}"))
    client = udi_image / "etc" / "ssh_config"
    client.write_text(client.read_text().replace("Port 1204", f"Port {port}")
                      .replace("~/.udiRoot/id_rsa.key", "/keys/id_rsa.key"))  # fmt: skip
    for root_site in make_root_site(runtime_site):
        root_site.configure(optUdiImage=udi_image, siteFs=f"{keys}:/keys")
        yield root_site, port, keys


@pytest.fixture(scope="module")
def debian_image(runtime_images: RuntimeImages) -> Iterator[str]:
    """A squashfs image of Debian programs with their glibc, under an id of its own."""
    from shifter.image.meta import format_meta

    name = "sshd-debian"
    tree = Path(tempfile.mkdtemp(prefix="shifter-sshd-debian-"))
    squashfs = runtime_images.path / f"{image_id(name)}.squashfs"
    try:
        for tool in ("/bin/sh", "/bin/cat", "/usr/bin/id", "/bin/ls"):
            _copy_with_libraries(os.path.realpath(tool), tree, tool)
        (tree / "etc").mkdir()
        (tree / "etc" / "image-only.conf").write_text("from the image\n")
        (tree / "etc" / "debian_version").write_text("12.0\n")
        subprocess.run(["mksquashfs", str(tree), str(squashfs), "-noappend", "-all-root",
                        "-no-xattrs", "-quiet", "-no-progress"], check=True)  # fmt: skip
        squashfs.chmod(0o644)
        (runtime_images.path / f"{image_id(name)}.meta").write_text(format_meta("squashfs")[0])
        yield name
    finally:
        shutil.rmtree(tree)
        squashfs.unlink(missing_ok=True)
        (runtime_images.path / f"{image_id(name)}.meta").unlink(missing_ok=True)


def _pubkey(keys: Path) -> str:
    return (keys / "id_rsa.key.pub").read_text().strip()


def _sshd_pids(root_site: RootSite) -> list[int]:
    udi_mount = str(root_site.site.udi_mount)
    pids = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.readlink(f"/proc/{name}/root") == udi_mount:
                pids.append(int(name))
        except OSError:
            continue
    return pids


@pytest.mark.parametrize("kind", ["busybox", "debian"])
def test_ssh_from_the_container_lands_in_the_container(
    sshd_site: tuple[RootSite, int, Path], debian_image: str, kind: str
) -> None:
    root_site, port, keys = sshd_site
    name = "main" if kind == "busybox" else debian_image
    result = root_site.setup("-s", _pubkey(keys), image=name)
    assert result.returncode == 0, result.stderr
    pids = _sshd_pids(root_site)
    assert pids, "no sshd runs in the container"
    for pid in pids:
        assert os.stat(f"/proc/{pid}").st_uid == uid_of(TEST_USER)  # the user's, never root
    address = _node_address()
    image = f"--image={root_site.images.ref(name)}"
    # BatchMode: a refused key fails instead of asking for a password.
    remote = "cat /etc/image-only.conf; id -un; ls /proc/self/root/opt/udiImage/sbin; echo $PATH"
    out = output_of(root_site.run(image, "/opt/udiImage/bin/ssh", "-o", "BatchMode=yes",
                                  address, remote))  # fmt: skip
    assert out.splitlines() == ["from the image", TEST_USER, "sshd",
                                "/usr/local/bin:/usr/bin:/bin:/opt/udiImage/bin"]
    # The sshd's own files are the container's, never the user's home.
    sshd_config = root_site.site.udi_mount / "etc" / "ssh" / "sshd_config"
    assert f"AllowUsers {TEST_USER}" in sshd_config.read_text()
    host_key = root_site.site.udi_mount / "etc" / "ssh" / "ssh_host_ed25519_key"
    assert (host_key.stat().st_uid, host_key.stat().st_mode & 0o777) == (uid_of(TEST_USER), 0o600)
    root_site.unsetup()
    assert _sshd_pids(root_site) == []
    with socket.socket() as probe:
        assert probe.connect_ex((address, port)) != 0, "the sshd still listens"


def test_another_user_cannot_log_in(sshd_site: tuple[RootSite, int, Path]) -> None:
    root_site, port, keys = sshd_site
    assert root_site.setup("-s", _pubkey(keys)).returncode == 0
    other_key = Path(tempfile.mkdtemp(prefix="shifter-sshd-other-"))
    try:
        os.chown(other_key, uid_of(OTHER_USER), gid_of(OTHER_USER))
        subprocess.run(["runuser", "-u", OTHER_USER, "--", "ssh-keygen", "-q", "-t", "rsa",
                        "-N", "", "-f", str(other_key / "id")], check=True)  # fmt: skip
        for user, key in ((OTHER_USER, other_key / "id"), (TEST_USER, other_key / "id")):
            result = subprocess.run(
                ["runuser", "-u", OTHER_USER, "--", "ssh", "-o", "BatchMode=yes",
                 "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                 "-o", "IdentitiesOnly=yes", "-i", str(key), "-p", str(port),
                 f"{user}@{_node_address()}", "true"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert result.returncode == 255, (user, result.stderr)
            assert "Permission denied" in result.stderr
    finally:
        shutil.rmtree(other_key)


def test_a_taken_port_fails_setuproot_and_leaves_nothing(sshd_site: tuple[RootSite, int, Path]
                                                         ) -> None:  # fmt: skip
    root_site, port, keys = sshd_site
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind((_node_address(), port))
        holder.listen()
        result = root_site.setup("-s", _pubkey(keys))
    assert result.returncode != 0
    assert "the job's sshd did not start" in result.stderr
    assert "Address already in use" in result.stderr or "bind" in result.stderr.lower()
    assert root_site.mounts() == []
    assert _sshd_pids(root_site) == []


def test_a_users_ssh_config_for_all_hosts_is_read_first(
    sshd_site: tuple[RootSite, int, Path]
) -> None:
    """docs/sshd.md: `~/.ssh/config` comes before the container's /etc/ssh/ssh_config. An
    IdentityFile of its own adds a key (ssh offers both, the job's key still works); a Port
    of its own wins and ssh fails; `-F /etc/ssh/ssh_config` leaves the user's file out."""
    root_site, _, keys = sshd_site
    # The users' homes in the container are this directory (as sites mount /home).
    user_home = Path(os.path.expanduser(f"~{TEST_USER}"))
    homes = Path(tempfile.mkdtemp(prefix="shifter-sshd-homes-"))
    home = homes / user_home.name
    try:
        (home / ".ssh").mkdir(parents=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(home / ".ssh" / "other")], check=True)  # fmt: skip
        for path in (home, home / ".ssh", *(home / ".ssh").iterdir()):
            os.chown(path, uid_of(TEST_USER), gid_of(TEST_USER))
        homes.chmod(0o755)
        root_site.configure(optUdiImage=root_site.site.root / "udiImage",
                            siteFs=f"{keys}:/keys;{homes}:{user_home.parent}")  # fmt: skip
        assert root_site.setup("-s", _pubkey(keys)).returncode == 0
        config = home / ".ssh" / "config"
        config.touch()
        os.chown(config, uid_of(TEST_USER), gid_of(TEST_USER))  # ssh refuses it otherwise
        ssh = ["/opt/udiImage/bin/ssh", "-o", "BatchMode=yes"]
        remote = [_node_address(), "echo reached"]
        config.write_text("Host *\n    IdentityFile ~/.ssh/other\n")
        out = root_site.run("--image=" + root_site.images.ref("main"), *ssh, *remote)
        assert (out.returncode, out.stdout) == (0, "reached\n"), out.stderr
        config.write_text("Host *\n    Port 1\n")
        failed = root_site.run("--image=" + root_site.images.ref("main"), *ssh, *remote)
        assert failed.returncode == 255 and "port 1: Connection refused" in failed.stderr
        out = root_site.run("--image=" + root_site.images.ref("main"), *ssh,
                            "-F", "/etc/ssh/ssh_config", *remote)  # fmt: skip
        assert (out.returncode, out.stdout) == (0, "reached\n"), out.stderr
    finally:
        root_site.unsetup()
        shutil.rmtree(homes)


@pytest.mark.parametrize("key", [
    "ssh-rsa",  # no key material
    'command="/bin/sh" ssh-rsa AAAAB3NzaC1yc2E test',  # authorized_keys options
    "ssh-rsa AAAAB3NzaC1yc2E\nssh-rsa AAAAB3NzaC1yc2E",  # two lines
    "ssh-dss AAAAB3NzaC1kc3M",  # a type sshd no longer accepts
])  # fmt: skip
def test_a_bad_public_key_is_refused_before_anything_is_mounted(
    sshd_site: tuple[RootSite, int, Path], key: str
) -> None:
    root_site, _, _ = sshd_site
    result = root_site.setup("-s", key)
    assert result.returncode != 0
    assert "not an OpenSSH public key line" in result.stderr
    assert root_site.mounts() == []


def test_ccm_the_hosts_own_environment_with_the_sshd(sshd_site: tuple[RootSite, int, Path]
                                                     ) -> None:  # fmt: skip
    """CCM is `local:/` with the sshd: ssh lands in the host's environment, containerized."""
    root_site, _, keys = sshd_site
    root_site.configure(optUdiImage=root_site.site.root / "udiImage", siteFs=f"{keys}:/keys",
                        allowLocalChroot=1)  # fmt: skip
    result = root_site.setup("-s", _pubkey(keys), image="/", image_type="local")
    assert result.returncode == 0, result.stderr
    marker = root_site.site.root / "udiRoot.conf"  # a host file, seen through local:/
    image = "--image=local:/"
    out = output_of(root_site.run(image, "/opt/udiImage/bin/ssh", "-o", "BatchMode=yes",
                                  _node_address(), f"cat /etc/debian_version; ls {marker}"))
    assert out.splitlines()[1:] == [str(marker)], out


def test_the_bundle_loads_only_from_opt_udiimage_and_is_rebuilt_only_when_needed() -> None:
    from shifter.libprep.sshbundle import build

    target = Path(tempfile.mkdtemp(prefix="shifter-sshd-bundle-"))
    try:
        assert build(str(target)) != []
        for program in ("sbin/sshd", "bin/ssh", "bin/ssh-keygen"):
            path = str(target / program)
            interp = subprocess.run(["patchelf", "--print-interpreter", path], check=True,
                                    capture_output=True, text=True).stdout.strip()  # fmt: skip
            rpath = subprocess.run(["patchelf", "--print-rpath", path], check=True,
                                   capture_output=True, text=True).stdout.strip()  # fmt: skip
            assert (interp, rpath) == ("/opt/udiImage/lib/ld-linux-x86-64.so.2",
                                       "/opt/udiImage/lib")  # fmt: skip
        assert (target / "lib" / "libc.so.6").exists()  # the C library travels too
        assert build(str(target)) == []  # the same host files: nothing redone
    finally:
        shutil.rmtree(target)
