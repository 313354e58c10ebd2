"""docs/install.md, followed: a wheel of the checkout installed into a fresh prefix,
`shifter-site-install` run, the gateway started with its systemd unit's own command line as
the gateway's (non-root) account, and an ordinary user pulling and running an image through
it with the linked commands; then `--uninstall`.

Every path the installer writes is under the test's directory (its options), except the
gateway account, which scripts/install.sh created (`shiftergw`). The unit is checked with
`systemd-analyze verify`.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shifter.cli.launcher import COMMANDS
from shifter.devtools.service import free_port
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_shifterimg_e2e import HEX_ID, ok, status_lines
from tests.services.gateway_fixtures import SYSTEM, USER_A, uid_of, wait_for
from tests.services.registries import RegistryEndpoint

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_ACCOUNT = "shiftergw"


@pytest.fixture(scope="module")
def prefix() -> Iterator[Path]:
    """The package installed from a wheel into a new venv, as docs/install.md says."""
    top = Path(tempfile.mkdtemp(prefix="shifter-site-", dir="/tmp"))
    top.chmod(0o755)
    try:
        wheels = top / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(wheels), str(ROOT)], check=True, capture_output=True, timeout=600)
        (wheel,) = wheels.glob("shifter_hpc-*.whl")
        venv = top / "opt" / "shifter"
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=300)
        # gunicorn for the second unit, as docs/install.md says.
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel), "gunicorn",
                        "uvicorn-worker"], check=True, capture_output=True, timeout=600)
        yield top
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)], check=False)


def test_install_start_the_unit_pull_and_run(
    prefix: Path, munged: Any, registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    venv = prefix / "opt" / "shifter"
    site = prefix / "site"
    etc, images = site / "etc" / "shifter", site / "images"
    port = free_port()
    account = pwd.getpwnam(GATEWAY_ACCOUNT)
    images.mkdir(parents=True, mode=0o755)
    os.chown(images, account.pw_uid, account.pw_gid)
    etc.mkdir(parents=True, mode=0o755)
    (etc / "imagemanager.json").write_text(f"""{{
    "DefaultImageLocation": "{registry_anon.netloc}",
    "Locations": {{"{registry_anon.netloc}": {{"url": "{registry_anon.url}"}}}},
    "CacheDirectory": "{site}/var/cache/shifter",
    "ExpandDirectory": "{site}/var/tmp/shifter",
    "MetadataStore": "sqlite:///{site}/var/lib/shifter/imagegw.sqlite",
    "LogFile": "{site}/var/log/shifter/imagegw.log",
    "Platforms": {{"{SYSTEM}": {{"mungeSocketPath": "{munged.socket}", "accesstype": "local",
        "admins": ["root"], "local": {{"imageDir": "{images}"}}}}}}
}}
""")
    (etc / "udiRoot.conf").write_text(
        f"udiMount={site}/var/udiMount\nloopMount={site}/var/udiLoopMount\n"
        f"imagePath={images}\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"
        f"system={SYSTEM}\nimageGateway=http://127.0.0.1:{port}\n")
    installer = [str(venv / "bin" / "shifter-site-install"), "--bin-dir", f"{site}/bin",
                 "--shebang", f"{site}/usr/bin/shifter", "--config-dir", str(etc),
                 "--systemd-dir", f"{site}/systemd", "--gateway-user", GATEWAY_ACCOUNT,
                 "--host", "127.0.0.1", "--port", str(port)]
    said = subprocess.run(installer, capture_output=True, text=True, timeout=120)
    assert said.returncode == 0, said.stderr
    assert f"create directory {site}/var/udiMount (mode 0755, owner root:root)" in said.stdout
    # Slurm's headers are installed here (scripts/install.sh): the plugin is built for it.
    plugin = venv / "lib" / "shifter" / "shifter_slurm.so"
    assert f"build the Slurm plugin {plugin}" in said.stdout and plugin.is_file()
    assert "then, in Slurm's plugstack.conf: required " in said.stdout
    # openssh-server is installed here too: the job's sshd goes into the udiImage.
    assert "copy the host's OpenSSH into the udiImage " in said.stdout
    assert (venv / "lib" / "shifter" / "udiImage" / "sbin" / "sshd").is_file()
    # Again, through the link it made: nothing left to do but the launchers.
    again = subprocess.run([f"{site}/bin/shifter-site-install", *installer[1:]],
                           capture_output=True, text=True, timeout=120)
    assert again.stdout.count("write the -I -S launcher") == len(COMMANDS)  # and the plugin:
    # written again every time (a Slurm upgrade needs them); the rest is already right
    assert "link " not in again.stdout and "create directory" not in again.stdout

    # The gateway's directories are its own and private; the examples are there.
    for directory in ("var/cache/shifter", "var/tmp/shifter", "var/lib/shifter"):
        info = (site / directory).stat()
        assert (info.st_uid, info.st_mode & 0o777) == (account.pw_uid, 0o700), directory
    assert (etc / "udiRoot.conf.example").is_file()
    assert (etc / "imagemanager.json.example").is_file()
    assert os.readlink(f"{site}/usr/bin/shifter") == str(venv / "bin" / "shifter")

    unit = site / "systemd" / "shifter-imagegw.service"
    mountd = site / "systemd" / "shifter-mountd.service"
    assert f"ExecStart={venv}/bin/shifter-mountd\n" in mountd.read_text()
    assert f"Environment=SHIFTER_CONFIG={etc}/udiRoot.conf\n" in mountd.read_text()
    for checked in (unit, site / "systemd" / "shifter-imagegw-gunicorn.service", mountd):
        verified = subprocess.run(["systemd-analyze", "verify", str(checked)],
                                  capture_output=True, text=True, timeout=120)
        assert verified.returncode == 0, verified.stderr
    lines = unit.read_text().splitlines()
    command = next(line for line in lines if line.startswith("ExecStart="))[len("ExecStart="):]
    environment = next(line for line in lines if line.startswith("Environment="))
    assert f"ReadWritePaths=-{site}/var/cache/shifter" in unit.read_text()
    assert f"-{images}" in next(line for line in lines if line.startswith("ReadWritePaths="))

    # The unit's exact command line, as its account.
    key, _, value = environment[len("Environment="):].partition("=")
    gateway = subprocess.Popen(
        ["/usr/sbin/runuser", "-u", GATEWAY_ACCOUNT, "--", *shlex.split(command)],
        env={"PATH": "/usr/bin:/bin", key: value}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        user_env = {"PATH": f"{site}/bin:/usr/bin:/bin",
                    "SHIFTER_CONFIG": str(etc / "udiRoot.conf"),
                    "SHIFTER_MUNGE_SOCKET": str(munged.socket)}

        def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["/usr/sbin/runuser", "-u", USER_A, "--", *argv],
                                  env=user_env, capture_output=True, text=True, timeout=300)

        wait_for(lambda: (site / "var/log/shifter/imagegw.log").exists()
                 and "Application startup complete" in (
                     site / "var/log/shifter/imagegw.log").read_text(),
                 what="the gateway to start")
        push_image(catalog.build("busybox"), registry_anon.url, repo_name, "v1")
        pulled = as_user(f"{site}/bin/shifterimg", "pull", f"{repo_name}:v1")
        assert status_lines(ok(pulled))[-1][2] == "READY", pulled.stderr
        assert HEX_ID.match(ok(as_user(f"{site}/bin/shifterimg", "lookup",
                                       f"{repo_name}:v1")).strip())
        ran = as_user(f"{site}/bin/shifter", f"--image=docker:{repo_name}:v1", "id", "-u")
        assert ok(ran) == f"{uid_of(USER_A)}\n"
        # A #! batch script through the shebang link runs inside the image (named by
        # $SHIFTER here, by the job's --image under Slurm: a #! line passes one argument).
        script = site / "job.sh"
        script.write_text(f"#!{site}/usr/bin/shifter /bin/sh\ncat /etc/os-release\n")
        script.chmod(0o755)
        user_env["SHIFTER"] = f"docker:{repo_name}:v1"
        assert "busybox" in ok(as_user(str(script))).lower()
        assert (site / "var/lib/shifter/imagegw.sqlite").stat().st_uid == account.pw_uid
    finally:
        gateway.terminate()  # runuser passes SIGTERM on to the gateway it started
        gateway.wait(timeout=60)

    removed = subprocess.run([*installer, "--uninstall"], capture_output=True, text=True,
                             timeout=120)
    assert removed.returncode == 0, removed.stderr
    assert not os.path.lexists(f"{site}/usr/bin/shifter")
    assert not os.path.lexists(f"{site}/bin/shifterimg") and not unit.exists()
    assert (etc / "udiRoot.conf").exists()  # the site's own configuration stays
