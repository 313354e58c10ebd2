"""`shifterimg` end to end: the real gateway (`shifter-imagegw serve`), real registries, the
real munged, and the commands run by real users (`runuser`), as on a login node.

Public pulls, lookups and lists; what Nextflow parses; pulls that fail; a login followed by
a private pull whose ACL keeps another user out; expire (admins only); import; a terminal's
rewritten status line and a password prompt that does not echo; failover from a dead
gateway to a live one. The status strings and the table layout are pinned in the unit
tests; here they come from a real gateway.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import signal
import stat
import subprocess
import termios
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shifter import proc
from shifter.devtools.service import free_port
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.services.gateway_fixtures import (
    ADMIN,
    BIN,
    PRIVATE,
    SYSTEM,
    USER_A,
    USER_B,
    Site,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

STATUS_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (Pulling|Importing) Image: (\S+), status: ([A-Z]+)$"
)
HEX_ID = re.compile(r"^[0-9a-f]{64}$")


def push_public(registry: RegistryEndpoint, repository: str) -> str:
    push_image(catalog.build("busybox"), registry.url, repository, "v1")
    return f"{repository}:v1"


def push_private(registry: RegistryEndpoint, repository: str) -> str:
    push_image(catalog.build("busybox"), registry.url, repository, "v1",
               credentials=("pusher", registry.credentials["pusher"]))
    return f"{PRIVATE}/{repository}:v1"


def status_lines(stdout: str) -> list[tuple[str, str, str]]:
    found = [STATUS_LINE.match(line) for line in stdout.splitlines()]
    return [m.groups() for m in found if m]  # type: ignore[misc]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_public_pull_then_lookup_and_images_as_another_user(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    pulled = ok(site.run("pull", tag))
    statuses = [s for _, image, s in status_lines(pulled) if image == f"docker:{tag}"]
    assert statuses[-1] == "READY" and statuses[0] in ("INIT", "PENDING", "PULLING")
    assert len(statuses) == len(set(statuses)), "not a terminal: one line per new status"
    assert pulled.splitlines()[-1].endswith(f"Pulling Image: docker:{tag}, status: READY")

    image_id = ok(site.run("lookup", tag, user=USER_B)).strip()
    assert HEX_ID.match(image_id)
    assert ok(site.run("lookup", f"docker:{tag}")) == f"{image_id}\n"

    rows = [line for line in ok(site.run("images", user=USER_B)).splitlines() if tag in line]
    assert len(rows) == 1
    assert rows[0].split()[:4] == [SYSTEM, "docker", "READY", image_id[:10]]
    assert rows[0].split()[5] == tag
    listed = json.loads(ok(site.run("images", "--json", user=USER_B)))
    assert [r["id"] for r in listed if tag in r["tag"]] == [image_id]

    # An ACL on an image anyone can pull is ignored by the gateway: the user is told.
    again = site.run("pull", "--user", USER_B, tag)
    assert status_lines(ok(again))[-1][2] == "READY"
    assert "the image is public" in again.stderr
    # --debug logs each request; a usage error is exit 2.
    debug = site.run("--debug", "lookup", tag)
    assert re.search(r"GET http://127\.0\.0\.1:\d+/api/lookup/testsys/docker/\S+/ -> 200",
                     debug.stderr), debug.stderr
    assert site.run("lookup").returncode == 2


def test_verbose_pull_output_is_what_nextflow_parses(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    output = ok(site.run("-v", "pull", tag))
    assert output.endswith(", status: READY\n\n")
    assert output.startswith("Message: {\n")
    for command in ("tail -n2 | head -n1 | awk '{print $6}'", "grep -c '\"status\": \"READY\"'"):
        parsed = subprocess.run(["sh", "-c", command], input=output, capture_output=True,
                                text=True, check=True)
        assert parsed.stdout == ("READY\n" if "awk" in command else "1\n"), command
    # The lookup Nextflow runs first: verbose, the id still alone on the last line.
    looked_up = ok(site.run("-v", "lookup", tag)).splitlines()
    assert looked_up[0] == "Message: {" and HEX_ID.match(looked_up[-1])


def test_a_pull_that_fails_exits_1_with_the_reason(
    start_site: Callable[..., Site], repo_name: str
) -> None:
    site = start_site()
    result = site.run("pull", f"{repo_name}:nosuchtag")
    assert result.returncode == 1
    assert status_lines(result.stdout)[-1][2] == "FAILURE"
    assert result.stderr.startswith(
        f"shifterimg: the gateway could not pull docker:{repo_name}:nosuchtag: FAILURE"
    )
    missing = site.run("lookup", f"{repo_name}:nosuchtag")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr.splitlines()[0] == (
        f"shifterimg: image docker:{repo_name}:nosuchtag is not on the image gateway, "
        "or you may not use it"
    )
    assert f"hint: pull it first: shifterimg pull docker:{repo_name}:nosuchtag" in missing.stderr
    # -v shows the refusal on stdout as the original did (old wrappers read its "status").
    verbose = site.run("-v", "lookup", f"{repo_name}:nosuchtag")
    assert verbose.stdout.startswith('Got response: 404\nMessage: {\n  "status": 404,\n')


def test_a_verbose_failed_pull_prints_its_reply_once(
    start_site: Callable[..., Site], repo_name: str
) -> None:
    # A second pull of a failed image meets the gateway's hold: shifterimg asks every
    # 0.5 s for a while, and each identical reply used to print its block again.
    site = start_site(SHIFTER_IMAGEGW_FAILURE_HOLD_S="60")
    tag = f"{repo_name}:nosuchtag"
    assert site.run("pull", tag).returncode == 1
    result = site.run("-v", "pull", tag)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert result.stdout.count("Message: {") == 1, result.stdout
    assert [status for _, _, status in status_lines(result.stdout)] == ["FAILURE"]
    # The last two lines keep the layout workflow tools parse: the status, then a blank.
    assert STATUS_LINE.match(lines[-2]) and lines[-2].split()[5] == "FAILURE"
    assert lines[-1] == ""


def test_a_pull_right_after_a_failure_waits_for_the_gateway_to_retry(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    # The gateway holds a failure 8 s before it pulls again: long enough to push the image
    # and ask again within it, short enough for shifterimg's 15 s of patience.
    site = start_site(SHIFTER_IMAGEGW_FAILURE_HOLD_S="8")
    tag = f"{repo_name}:v1"
    assert site.run("pull", tag).returncode == 1  # not pushed yet
    push_public(registry_anon, repo_name)
    # The first reply is that held, old FAILURE; then the gateway pulls again.
    statuses = [s for _, _, s in status_lines(ok(site.run("pull", tag)))]
    assert statuses[0] == "FAILURE" and statuses[-1] == "READY"


def _pty_session(argv: list[str], env: dict[str, str],
                 answers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Run `argv` on a new pseudo-terminal (its controlling terminal, so /dev/tty works),
    typing each answer after its prompt appears; returns the exit status and all output."""
    master, slave = pty.openpty()

    def take_terminal() -> None:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave,
                               start_new_session=True, preexec_fn=take_terminal)
    os.close(slave)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every holder of the terminal has closed it
                    break
                if not chunk:
                    break
                output += chunk
            if pending and pending[0][0] in output:
                os.write(master, pending.pop(0)[1])
            if not ready and process.poll() is not None:
                break
        return process.wait(timeout=60), output
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def test_login_then_private_pull_with_an_acl(
    private_registry: RegistryEndpoint, start_site: Callable[..., Site], repo_name: str
) -> None:
    site = start_site()
    tag = push_private(private_registry, repo_name)
    password = private_registry.credentials["puller"]

    # Without a login the registry refuses the gateway.
    refused = site.run("pull", "--user", USER_A, tag)
    assert refused.returncode == 1 and status_lines(refused.stdout)[-1][2] == "FAILURE"

    # The login prompts on the terminal; the password is not echoed.
    status, screen = _pty_session(
        site.argv(USER_A, ("login", PRIVATE)), site.env(USER_A),
        [(b"private username: ", b"puller\n"), (b"private password: ", f"{password}\n".encode())],
    )
    assert status == 0, screen
    assert b"puller" in screen and password.encode() not in screen
    saved = site.home(USER_A) / "shifter" / "registry-logins.json"
    info = saved.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, uid_of(USER_A))
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700

    pulled = site.run("pull", "--user", USER_A, tag)
    assert status_lines(ok(pulled))[-1][2] == "READY", pulled.stderr
    image_id = ok(site.run("lookup", tag)).strip()
    assert HEX_ID.match(image_id)

    # The ACL keeps the other user out, however they ask.
    denied = site.run("lookup", tag, user=USER_B)
    assert denied.returncode == 1 and "is not on the image gateway" in denied.stderr
    assert tag not in ok(site.run("images", user=USER_B))
    assert tag in ok(site.run("images"))
    sneaky = site.run("pull", tag, user=USER_B)  # no login: the registry says no
    assert sneaky.returncode == 1
    assert site.run("lookup", tag, user=USER_B).returncode == 1

    # Logged out, the file keeps nothing for that location.
    assert ok(site.run("logout", PRIVATE)) == f"Removed the login for {PRIVATE} on {SYSTEM}\n"
    assert json.loads(saved.read_text())["systems"] == {}


def test_a_login_from_a_script(
    private_registry: RegistryEndpoint, start_site: Callable[..., Site], repo_name: str
) -> None:
    site = start_site()
    tag = push_private(private_registry, repo_name)
    password = private_registry.credentials["puller"]
    saved = site.run("login", PRIVATE, "--username", "puller", "--password-stdin",
                     user=USER_B, stdin=f"{password}\n")
    assert ok(saved).startswith(f"Saved the login for {PRIVATE} on {SYSTEM} in ")
    # Pulled with a login but no --user/--group: the image is for everyone (seed docs).
    assert status_lines(ok(site.run("pull", tag, user=USER_B)))[-1][2] == "READY"
    assert HEX_ID.match(ok(site.run("lookup", tag, user=USER_A)).strip())


def test_expire_is_for_admins(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    ok(site.run("pull", tag))
    refused = site.run("expire", tag)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"shifterimg: the image gateway refused the expire of docker:{tag}: "
    )
    assert "may not expire images" in refused.stderr
    assert ok(site.run("expire", tag, user=ADMIN)) == ""
    unknown = site.run("expire", f"{repo_name}:never-pulled", user=ADMIN)
    assert unknown.returncode == 1 and "has no image" in unknown.stderr
    wait_for(lambda: site.run("lookup", tag).returncode == 1, what="the expired image to go")
    assert ok(site.run("autoexpire", user=ADMIN)) == ""  # nothing unused for 90 days
    assert site.run("autoexpire").returncode == 1


def test_import_a_squashfs_file(
    start_site: Callable[..., Site], site_dir: Path
) -> None:
    site = start_site()
    content = site_dir / "content"
    content.mkdir()
    (content / "hello.txt").write_text("imported\n")
    image = site_dir / "mytool.sqsh"
    proc.run(["mksquashfs", str(content), str(image), "-quiet", "-no-progress", "-all-root"])
    image.chmod(0o644)

    imported = ok(site.run("import", str(image), "mytool:v1"))
    lines = status_lines(imported)
    assert lines[-1] == ("Importing", "custom:mytool:v1", "READY")
    # A file under 1 MiB: the gateway's id (fasthash) is its sha256.
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    assert ok(site.run("lookup", "custom:mytool:v1", user=USER_B)) == f"{expected}\n"

    refused = site.run("import", str(image), "other:v1", user=USER_B)
    assert refused.returncode == 1 and "may not import images" in refused.stderr
    missing = site.run("import", str(site_dir / "nope.sqsh"), "x:v1")
    assert missing.returncode == 1
    assert "cannot import" in missing.stderr and "No such file" in missing.stderr


def test_on_a_terminal_the_status_line_is_rewritten(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    status, screen = _pty_session(site.argv(USER_A, ("pull", tag)), site.env(USER_A), [])
    assert status == 0, screen
    text = screen.decode()
    assert text.count("\x1b[2K") >= 2
    assert text.endswith(f"Pulling Image: docker:{tag}, status: READY\r\n")
    assert "\n" not in text[:-2]  # one line, rewritten in place


def test_a_dead_gateway_is_skipped(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site(before=(f"http://127.0.0.1:{free_port()}",))
    tag = push_public(registry_anon, repo_name)
    assert status_lines(ok(site.run("pull", tag)))[-1][2] == "READY"
    assert HEX_ID.match(ok(site.run("lookup", tag, user=USER_B)).strip())


def test_a_hung_gateway_is_passed_over_and_remembered(
    start_site: Callable[..., Site], gateway_env: Any, gateway_servers: Callable[..., Any],
    registry_anon: RegistryEndpoint, repo_name: str,
) -> None:
    """A gateway stopped with SIGSTOP still accepts connections (the kernel does) but never
    answers: the first call moves on after gatewayConnectTimeout and writes it down; the
    user's next calls ask the live gateway first."""
    hung = gateway_servers(gateway_env.write())
    site = start_site(before=(hung.url,))
    with open(site.config, "a") as config:
        config.write("gatewayConnectTimeout=2\n")
    tag = push_public(registry_anon, repo_name)
    ok(site.run("pull", tag))
    env = {**site.env(USER_A), "XDG_RUNTIME_DIR": str(site.home(USER_A))}

    def lookup() -> subprocess.CompletedProcess[str]:
        return subprocess.run(site.argv(USER_A, ("--debug", "lookup", tag)), env=env,
                              capture_output=True, text=True, timeout=120)

    os.kill(hung.pid, signal.SIGSTOP)
    try:
        first = lookup()
        assert HEX_ID.match(ok(first).strip())
        assert any(f"GET {hung.url}/api/lookup/" in line and line.endswith(
            ": no answer within 2 s (gatewayConnectTimeout)")
            for line in first.stderr.splitlines()), first.stderr
        remembered = site.home(USER_A) / "shifter" / "gateways-down"
        assert hung.url in remembered.read_text()
        second = lookup()
        assert HEX_ID.match(ok(second).strip())
        asked = [line for line in second.stderr.splitlines() if "/api/lookup/" in line]
        assert len(asked) == 1 and hung.url not in asked[0], second.stderr
    finally:
        os.kill(hung.pid, signal.SIGCONT)


def test_errors_name_the_real_cause(
    start_site: Callable[..., Site], registry_anon: RegistryEndpoint, repo_name: str
) -> None:
    site = start_site()
    tag = push_public(registry_anon, repo_name)
    # A system the gateway does not know: the gateway's own 400, not "is it running?".
    text = site.config.read_text()
    site.config.write_text(text.replace(f"system={SYSTEM}", "system=nosuchsystem"))
    wrong = site.run("lookup", tag)
    assert wrong.returncode == 1
    assert wrong.stderr.startswith(
        f"shifterimg: the image gateway rejected the lookup of docker:{tag}: system "
        "'nosuchsystem' is not one of the configured Platforms")
    assert "hint: udiRoot.conf (system=nosuchsystem) and the gateway's" in wrong.stderr
    assert "is the gateway running" not in wrong.stderr
    site.config.write_text(text)
    # A registry location the gateway does not list: the same.
    unknown = site.run("pull", f"elsewhere.example.org/{tag}")
    assert unknown.returncode == 1 and "the image gateway rejected the pull" in unknown.stderr
    # A failed pull's hint follows its cause.
    missing = site.run("pull", f"{repo_name}:nosuchtag")
    assert "hint: check the image name and tag" in missing.stderr, missing.stderr

    # A login from nowhere: a clear refusal, not an internal error.
    nothing = subprocess.run(site.argv(USER_A, ("login", PRIVATE)), env=site.env(USER_A),
                             stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=60)
    assert nothing.returncode == 1, nothing.stderr
    assert "the input ended" in nothing.stderr
    blank = site.run("login", PRIVATE, "--username", "  ", "--password-stdin", stdin="pw\n")
    assert blank.returncode == 1 and "no user name given" in blank.stderr
    # A login file others may read blocks no public pull: it is not used, and said so.
    saved = ok(site.run("login", PRIVATE, "--username", "puller", "--password-stdin",
                        stdin="secret\n"))
    logins = Path(saved.rstrip().rsplit(" in ", 1)[1])
    logins.chmod(0o644)
    pulled = site.run("pull", tag)
    assert status_lines(ok(pulled))[-1][2] == "READY"
    assert "warning: your registry logins are not used" in pulled.stderr
    assert f"chmod 600 {logins}" in pulled.stderr


def test_every_command_has_a_version(tmp_path: Path) -> None:
    from shifter import __version__

    for command in ("shifter", "shifterimg", "setupRoot", "unsetupRoot", "shifter-imagegw"):
        # No configuration needed: SHIFTER_CONFIG names a file that does not exist.
        result = subprocess.run([str(BIN / command), "--version"], capture_output=True,
                                text=True, timeout=60,
                                env={"SHIFTER_CONFIG": str(tmp_path / "none.conf")})
        assert (result.returncode, result.stdout) == (0, f"{command} {__version__}\n"), command
