"""A real sshd for the remote-transfer tests (registered as a plugin in tests/conftest.py).

`sshd` (session scope) runs `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 and a free port,
with its own ed25519 host key, config, log and authorized_keys in a temp directory directly
under /tmp, and lets exactly one account in: `shiftergw`, the stand-in for the dedicated
gateway account on a remote system, with a generated ed25519 client key. The test process
(root) plays the gateway and connects with that key and a known_hosts file holding the
server's host key; `SshServer.ssh_options`/`scp_options` are what a Platform needs for that.

System settings the fixture makes when they are missing (both also belong in
scripts/install.sh): the account `shiftergw` (a system account with /bin/sh and password
`*`: with `UsePAM no` sshd refuses any account whose password is locked with `!`), and
`/run/sshd`, the empty privilege-separation directory sshd insists on.

sshd runs with `StrictModes no` because authorized_keys lives under /tmp (world-writable),
and reads it as `shiftergw`, hence the 0755 directory and 0644 file. It is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shifter import proc

GATEWAY_ACCOUNT = "shiftergw"
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
LISTEN_HOST = "127.0.0.1"
READY_TIMEOUT_S = 20.0
TOOLS = {SSHD: "openssh-server", "ssh": "openssh-client", "scp": "openssh-client",
         "ssh-keygen": "openssh-client", "setfacl": "acl", "useradd": "passwd"}


@dataclass(frozen=True)
class SshServer:
    """A running sshd as tests see it.

    `ssh_options` and `scp_options` hold the port (`-p`/`-P`), the known_hosts file and
    strict host-key checking, and `-F none` so that no ssh_config of the test machine
    changes what is tested.
    """

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts: Path
    ssh_options: tuple[str, ...]
    scp_options: tuple[str, ...]
    directory: Path
    log_path: Path
    pid: int

    def platform_data(
        self, image_dir: str | os.PathLike[str], hosts: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A `Platforms.<name>` entry (JSON data) for a remote platform served by this sshd."""
        return {
            "accesstype": "remote",
            "host": list(hosts) if hosts is not None else [self.host],
            "ssh": {
                "username": self.user,
                "key": str(self.key_path),
                "imageDir": str(image_dir),
                "sshCmdOptions": list(self.ssh_options),
                "scpCmdOptions": list(self.scp_options),
            },
        }

    def run(self, command: str) -> subprocess.CompletedProcess[bytes]:
        """Run a remote command as the account; raises ToolError if it fails."""
        return proc.run(
            ["ssh", "-o", "BatchMode=yes", "-i", str(self.key_path), *self.ssh_options,
             f"{self.user}@{self.host}", command],
            timeout=60,
        )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def ensure_gateway_account(name: str = GATEWAY_ACCOUNT) -> pwd.struct_passwd:
    """The account sshd lets in: created if missing, its password unlocked for sshd."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        proc.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh",
                  "--password", "*", name])
    shadow = proc.run(["getent", "shadow", name]).stdout.decode().split(":")
    if shadow[1].startswith("!"):
        proc.run(["usermod", "--password", "*", name])  # '*': no password, but not locked
    return pwd.getpwnam(name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LISTEN_HOST, 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path, comment: str) -> str:
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])
    return path.with_suffix(".pub").read_text().strip()


def _write_config(directory: Path, port: int, user: str) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        "\n".join([
            f"ListenAddress {LISTEN_HOST}:{port}",
            f"HostKey {directory / 'host_ed25519'}",
            "PidFile none",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"AuthorizedKeysFile {directory / 'authorized_keys'}",
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {user}",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "Subsystem sftp internal-sftp",  # scp speaks SFTP by default since OpenSSH 9.0
            "",
        ])
    )
    return config


def _wait_until_listening(process: subprocess.Popen[bytes], log_path: Path, port: int) -> None:
    ready = f"Server listening on {LISTEN_HOST} port {port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready in log_path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            break
        time.sleep(0.02)
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-10:])
    proc.stop(process)
    pytest.fail(f"sshd did not start listening on port {port}:\n{tail}", pytrace=False)


@contextlib.contextmanager
def running_sshd(extra_keys: Sequence[str] = ()) -> Iterator[SshServer]:
    """Start a private sshd; stop it by PID and remove its directory on the way out.
    `extra_keys`: public key lines also let in (bench.ssh: a job's RSA key)."""
    account = ensure_gateway_account()
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="shifter-sshd-", dir="/tmp"))
    process: subprocess.Popen[bytes] | None = None
    try:
        directory.chmod(0o755)  # sshd reads authorized_keys as the account
        host_key = _keygen(directory / "host_ed25519", "shifter-test-host")
        client_key = _keygen(directory / "client_ed25519", "shifter-test-gateway")
        authorized = directory / "authorized_keys"
        authorized.write_text("".join(f"{key}\n" for key in (client_key, *extra_keys)))
        authorized.chmod(0o644)
        port = _free_port()
        known_hosts = directory / "known_hosts"
        known_hosts.write_text(f"[{LISTEN_HOST}]:{port} {host_key}\n")
        config = _write_config(directory, port, account.pw_name)
        proc.run([SSHD, "-t", "-f", config])  # a config error, said plainly, before starting
        log_path = directory / "sshd.log"
        process = proc.spawn([SSHD, "-D", "-e", "-f", config], output_path=log_path)
        _wait_until_listening(process, log_path, port)
        common = ("-F", "none", "-o", f"UserKnownHostsFile={known_hosts}",
                  "-o", "StrictHostKeyChecking=yes")
        server = SshServer(
            host=LISTEN_HOST,
            port=port,
            user=account.pw_name,
            key_path=directory / "client_ed25519",
            known_hosts=known_hosts,
            ssh_options=("-p", str(port), *common),
            scp_options=("-P", str(port), *common),
            directory=directory,
            log_path=log_path,
            pid=process.pid,
        )
        yield server
    finally:
        if process is not None:
            proc.stop(process)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SshServer]:
    """A real sshd on 127.0.0.1 that lets `shiftergw` in with `key_path` (needs root)."""
    if os.geteuid() != 0:
        pytest.fail("the sshd fixture needs root (it runs sshd and may create shiftergw); "
                    "run the service tier with sudo scripts/test.sh", pytrace=False)
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: install the Debian package {package} "
                        "(sudo scripts/install.sh installs everything the tests need)",
                        pytrace=False)
    with running_sshd() as server:
        yield server
