"""`shifter` run by an ordinary user: the image runs, as the user, without privileges, with
the command, entrypoint, workdir, environment and exit status as specified.

Each test builds its container in real user and mount namespaces (squashfuse on
/dev/fuse); the `runtime_site` fixture checks afterwards that the host has no mount and no
squashfuse process left.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.services.runtime_fixtures import (
    TEST_GROUP,
    TEST_USER,
    Site,
    gid_of,
    output_of,
    uid_of,
)


def test_the_image_runs(runtime_site: Site) -> None:
    out = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "cat", "/etc/os-release")
    )
    assert 'NAME="Shifter Test Image"' in out


def test_the_command_runs_as_the_user(runtime_site: Site) -> None:
    out = output_of(runtime_site.run("--image", runtime_site.images.ref("main"), "id"))
    uid, gid = uid_of(TEST_USER), gid_of(TEST_USER)
    assert out.startswith(f"uid={uid}({TEST_USER}) gid={gid}({TEST_USER})")


def test_no_capability_and_no_new_privileges(runtime_site: Site) -> None:
    out = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "cat", "/proc/self/status")
    )
    status = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert status[name] == "0000000000000000", name
    assert status["NoNewPrivs"] == "1"
    uid = str(uid_of(TEST_USER))
    assert status["Uid"].split() == [uid] * 4
    # Supplementary groups stay, but only the user's own gid is mapped: the rest show as
    # the overflow gid.
    assert status["Groups"].split() == [str(gid_of(TEST_USER)), "65534"]


def test_the_supplementary_group_is_kept_but_unmapped(runtime_site: Site) -> None:
    out = output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}", "id", "-G"))
    assert out.split() == [str(gid_of(TEST_USER)), "65534"]
    assert str(gid_of(TEST_GROUP)) not in out


def test_setuid_root_binary_in_a_squashfs_image_gives_no_privilege(runtime_site: Site) -> None:
    # The control: the same binary on the host does get euid 0.
    host = runtime_site.images.tree / "usr/bin/id-suid"
    control = subprocess.run(
        ["/usr/sbin/runuser", "-u", TEST_USER, "--", str(host)], capture_output=True, text=True
    )
    assert "euid=0(root)" in control.stdout
    out = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "/usr/bin/id-suid")
    )
    assert "euid" not in out
    assert out.startswith(f"uid={uid_of(TEST_USER)}")


def test_exit_status_passes_through(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "sh", "-c", "exit 42")
    assert result.returncode == 42


def test_missing_command_exits_127(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "no-such-command")
    assert result.returncode == 127
    assert "shifter: no-such-command: No such file or directory" in result.stderr


def test_a_file_that_cannot_run_exits_126(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "/etc/os-release")
    assert result.returncode == 126


def test_options_end_at_the_first_word_of_the_command(runtime_site: Site) -> None:
    out = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "echo", "-i", "--image=x")
    )
    assert out == "-i --image=x\n"


def test_without_a_command_the_image_entrypoint_and_cmd_run(runtime_site: Site) -> None:
    assert (
        output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}")) == "entry cmd\n"
    )


def test_without_a_command_or_image_default_a_shell_reads_stdin(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('plain')}", input="echo from-sh\n")
    assert output_of(result) == "from-sh\n"


def test_entrypoint_forms(runtime_site: Site) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    assert output_of(runtime_site.run(image, "--entrypoint")) == "entry cmd\n"
    assert output_of(runtime_site.run(image, "--entrypoint", "you")) == "entry you\n"
    assert output_of(runtime_site.run(image, "--entrypoint=/bin/echo", "x", "y")) == "x y\n"
    assert output_of(runtime_site.run(image, "--entry=/bin/echo", "z")) == "z\n"


def test_entrypoint_without_an_image_entrypoint_is_an_error(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('plain')}", "--entrypoint")
    assert result.returncode == 1
    assert "the image does not have a defined entrypoint" in result.stderr


def test_workdir_is_the_callers_directory_when_the_container_has_it(runtime_site: Site) -> None:
    here = runtime_site.directory("cwd", 0o777)  # under /tmp, which the container binds
    out = output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}", "pwd", cwd=here))
    assert out == f"{here}\n"


def test_workdir_falls_back_to_the_image_workdir(runtime_site: Site) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", "pwd", cwd=Path("/root")
    )
    assert output_of(result) == "/work\n"
    assert "/root is not in the container; starting in /work" in result.stderr


def test_workdir_options(runtime_site: Site) -> None:
    image = f"--image={runtime_site.images.ref('main')}"
    assert output_of(runtime_site.run(image, "-w", "pwd")) == "/work\n"
    assert output_of(runtime_site.run(image, "--workdir=/opt/app", "pwd")) == "/opt/app\n"
    assert output_of(runtime_site.run(image, "-w/etc", "pwd")) == "/etc\n"


def test_missing_workdir_is_an_error(runtime_site: Site) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", "--workdir=/nowhere", "pwd"
    )
    assert result.returncode == 1
    assert "cannot change to working directory /nowhere" in result.stderr


def test_bare_workdir_needs_an_image_workdir(runtime_site: Site) -> None:
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('plain')}", "--workdir", "/bin/pwd"
    )
    assert result.returncode == 1
    assert "no workdir specified" in result.stderr
    assert "the value must be attached" in result.stderr
