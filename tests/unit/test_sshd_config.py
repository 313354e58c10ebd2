"""The job's sshd: the public key check (user input reaching root) and the sshd_config
setupRoot writes from the udiImage template."""

from __future__ import annotations

import pytest

from shifter.libprep.sshbundle import SSHD_CONFIG
from shifter.runtime.job.sshd import SshdError, check_pubkey, sshd_config
from shifter.wlm.cgroup import CgroupError, job_cgroup

pytestmark = pytest.mark.unit

KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQC7 shifter job key"


def test_a_public_key_line_is_accepted_trimmed() -> None:
    assert check_pubkey(f"  {KEY}\n") == KEY
    ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"
    assert check_pubkey(ed25519) == ed25519


@pytest.mark.parametrize("text", [
    "", "ssh-rsa", "ssh-dss AAAAB3NzaC1kc3M", f"from=\"*\" {KEY}", f"{KEY}\n{KEY}",
    "ssh-rsa AAAA$(reboot)", "ssh-rsa " + "A" * 20000, "ssh-rsa AAAA comment\x00nul",
])  # fmt: skip
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(SshdError, match="not an OpenSSH public key line"):
        check_pubkey(text)


def test_sshd_config_names_the_user_and_the_address() -> None:
    text = sshd_config(SSHD_CONFIG, "alice", "127.0.0.12")
    lines = text.splitlines()
    assert "AllowUsers alice" in lines
    assert "ListenAddress 127.0.0.12" in lines
    assert "PermitRootLogin no" in lines and "PasswordAuthentication no" in lines
    assert lines[-1] == "HostKey /etc/ssh/ssh_host_ed25519_key"
    assert not [line for line in lines if "ToBeReplaced" in line and not line.startswith("#")]


def test_the_job_cgroup_path_takes_only_a_numeric_job_id() -> None:
    assert job_cgroup("/sys/fs/cgroup/memory", 1001, "42") == (
        "/sys/fs/cgroup/memory/shifter/uid_1001/job_42")
    with pytest.raises(CgroupError):
        job_cgroup("/sys/fs/cgroup/memory", 1001, "../../x")
