"""Every launch `shifter` must refuse, with the message a user sees; and `local:` images,
including a setuid-root binary in one."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.services.runtime_fixtures import (
    OTHER_USER,
    TEST_USER,
    Site,
    assert_refused,
    uid_of,
)


def test_unknown_image(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image=id:{'0' * 64}", "true")
    assert_refused(result, f"image id:{'0' * 64} not found", "not ready yet", "hint: pull it first")


def test_no_image(runtime_site: Site) -> None:
    assert_refused(runtime_site.run("true"), "shifter: no image specified", "--image=TYPE:IMAGE")


def test_malformed_image(runtime_site: Site) -> None:
    assert_refused(runtime_site.run("--image=id:xyz", "true"), "--image: invalid image id 'xyz'")


def test_docker_image_needs_a_gateway(runtime_site: Site) -> None:
    assert_refused(
        runtime_site.run("--image=docker:ubuntu:22.04", "true"), "imageGateway is not set"
    )


def test_private_image_of_another_user_is_refused_although_readable(runtime_site: Site) -> None:
    image = runtime_site.images.ref("private_user")
    assert (
        runtime_site.images.path / f"{runtime_site.images.id('private_user')}.squashfs"
    ).stat().st_mode & 0o004
    assert_refused(
        runtime_site.run(f"--image={image}", "true"),
        f"permission denied to image {image}: it is private and you are not in its access list",
    )
    allowed = runtime_site.run(f"--image={image}", "id", "-u", user=OTHER_USER)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == f"{uid_of(OTHER_USER)}\n"


def test_private_image_whose_files_only_its_users_may_read(runtime_site: Site) -> None:
    # As the gateway stores a private image: mode 0600 and a read ACL entry per user.
    images = runtime_site.directory("private-images")
    name = runtime_site.images.id("private_user")
    meta = images / f"{name}.meta"
    shutil.copy(runtime_site.images.path / f"{name}.meta", meta)
    os.link(runtime_site.images.squashfs, images / f"{name}.squashfs")
    meta.chmod(0o600)
    subprocess.run(["setfacl", "-m", f"u:{OTHER_USER}:r", str(meta)], check=True)
    runtime_site.configure(imagePath=images)
    result = runtime_site.run(f"--image=id:{name}", "true")
    assert_refused(
        result,
        f"permission denied to image id:{name}: it is private and you are not in its access list",
        "hint: access belongs to each tag of the image: someone a tag admits can add you",
    )
    assert ".meta" not in result.stderr
    allowed = runtime_site.run(f"--image=id:{name}", "id", "-u", user=OTHER_USER)
    assert allowed.returncode == 0, allowed.stderr


def test_private_image_of_a_group_the_user_is_in(runtime_site: Site) -> None:
    image = runtime_site.images.ref("private_group")
    assert runtime_site.run(f"--image={image}", "true").returncode == 0
    assert_refused(
        runtime_site.run(f"--image={image}", "true", user=OTHER_USER), "permission denied"
    )


def test_ext4_images_need_the_privileged_path(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('ext4')}", "true")
    assert_refused(result, "shifter without root mounts only squashfs images")


def test_config_not_owned_by_root(runtime_site: Site) -> None:
    os.chown(runtime_site.config, uid_of(TEST_USER), -1)
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert_refused(result, f"{runtime_site.config}: must be owned by root")


def test_image_path_unreadable(runtime_site: Site) -> None:
    hidden = runtime_site.directory("hidden-images", 0o700)
    runtime_site.configure(imagePath=hidden)
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert_refused(result, "permission denied", "imagePath must be readable by every shifter user")


def test_image_file_unreadable(runtime_site: Site) -> None:
    images = runtime_site.directory("images2")
    name = runtime_site.images.id("main")
    (images / f"{name}.meta").write_text("FORMAT: squashfs\n")
    (images / f"{name}.squashfs").write_bytes(b"")
    (images / f"{name}.squashfs").chmod(0o600)
    runtime_site.configure(imagePath=images)
    result = runtime_site.run(f"--image=id:{name}", "true")
    assert_refused(result, "is not readable by you")


def test_shifter_refuses_root(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true", user=None)
    assert_refused(result, "shifter: shifter does not run containers as root")


def test_unknown_option(runtime_site: Site) -> None:
    assert_refused(runtime_site.run("--nope", "true"), "unrecognized option '--nope'", "--help")


def test_help_goes_to_stdout_without_a_config(runtime_site: Site) -> None:
    runtime_site.config.unlink()
    result = runtime_site.run("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: shifter [OPTIONS]")


def test_local_images_need_the_site_switch(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image=local:{runtime_site.images.tree}", "true")
    assert_refused(result, "the site does not allow local images", "allowLocalChroot=1")


def test_local_image_runs_and_its_setuid_root_binary_gives_no_privilege(
    runtime_site: Site,
) -> None:
    runtime_site.configure(allowLocalChroot=1)
    tree = runtime_site.images.tree
    suid = tree / "usr/bin/id-suid"
    assert suid.stat().st_uid == 0 and suid.stat().st_mode & 0o4000
    result = runtime_site.run(f"--image=local:{tree}", "sh", "-c", "cat /etc/os-release; id-suid")
    assert result.returncode == 0, result.stderr
    assert "Shifter Test Image" in result.stdout
    assert "euid" not in result.stdout
    assert f"uid={uid_of(TEST_USER)}" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env=NOVALUE="], "improperly formatted environment variable 'NOVALUE='"),
        (["-e", "=x"], "improperly formatted environment variable '=x'"),
        (["--env-file=/nonexistent"], "cannot open env-file /nonexistent"),
    ],
)
def test_bad_environment_options(runtime_site: Site, args: list[str], message: str) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", *args, "true")
    assert_refused(result, message)


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (
            ["-V", "relative:/d"],
            "shifter: --volume: invalid volume 'relative:/d': the source path 'relative' "
            "is not absolute",
        ),
        (
            ["-V", "/tmp:/etc"],
            "shifter: --volume: volume /tmp:/etc: /etc is in /etc, which is reserved for "
            "the system",
        ),
        (["-m", "nope"], "shifter: --module: unknown shifter module 'nope'"),
        (
            ["--env-file=/nonexistent"],
            "shifter: cannot open env-file /nonexistent: No such file or directory",
        ),
    ],
)
def test_cold_launch_refusals_once_the_image_server_runs(
    runtime_site: Site, args: list[str], first_line: str
) -> None:
    # A cold launch starts squashfuse before it checks volumes and reads the env-file
    # (launch.py's order): the refusal reads as before, with status 1, and nothing is left
    # (the fixture checks that no mount and no squashfuse remain).
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", *args, "true")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[0] == first_line


def test_missing_udi_mount(runtime_site: Site) -> None:
    runtime_site.configure(udiMount=runtime_site.root / "absent")
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert_refused(result, f"udiMount {runtime_site.root}/absent does not exist")


def test_a_corrupt_image_file(runtime_site: Site) -> None:
    images = runtime_site.directory("corrupt-images")
    name = runtime_site.images.id("main")
    (images / f"{name}.meta").write_text("FORMAT: squashfs\n")
    (images / f"{name}.squashfs").write_bytes(b"not a squashfs image" * 100)
    (images / f"{name}.squashfs").chmod(0o644)
    runtime_site.configure(imagePath=images)
    result = runtime_site.run(f"--image=id:{name}", "true")
    assert_refused(result, "squashfuse could not serve", f"{images}/{name}.squashfs")
