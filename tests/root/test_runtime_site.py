"""What the site puts in every container: /etc (etcPath, generated passwd and group, the
image's own files), /opt/udiImage, modules, hooks, a read-only or writable root."""

from __future__ import annotations

import os
from pathlib import Path

from tests.services.runtime_fixtures import (
    TEST_GROUP,
    TEST_USER,
    Site,
    gid_of,
    output_of,
    uid_of,
)


def _in(site: Site, *command: str, image: str = "main") -> str:
    return output_of(site.run(f"--image={site.images.ref(image)}", *command))


def _etc_path(site: Site, group_text: str) -> Path:
    etc = site.directory("etc_files")
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\n{TEST_USER}:x:{uid_of(TEST_USER)}:"
        f"{gid_of(TEST_USER)}:Test One:/home/{TEST_USER}:/bin/sh\n"
    )
    (etc / "group").write_text(group_text)
    (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\n")
    (etc / "site-motd").write_text("welcome from the site\n")
    for path in etc.iterdir():
        path.chmod(0o644)
    return etc


def test_etc_path_files_are_laid_over_the_image(runtime_site: Site) -> None:
    groups = f"root:x:0:\n{TEST_USER}:x:{gid_of(TEST_USER)}:\n"
    etc = _etc_path(runtime_site, groups)
    runtime_site.configure(populateEtcDynamically=0, etcPath=etc)
    assert _in(runtime_site, "cat", "/etc/site-motd") == "welcome from the site\n"
    passwd = _in(runtime_site, "cat", "/etc/passwd")
    assert "Test One" in passwd
    assert "imageuser" not in passwd  # the image's passwd is hidden
    assert _in(runtime_site, "cat", "/etc/image-only.conf") == "from the image\n"


def test_group_file_is_filtered_to_max_group_count(runtime_site: Site) -> None:
    groups = (
        "root:x:0:someone\n"
        + "".join(f"g{n}:x:{5000 + n}:other,{TEST_USER}\n" for n in range(4))
        + f"{TEST_USER}:x:{gid_of(TEST_USER)}:\n"
        + "broken line\n"
    )
    etc = _etc_path(runtime_site, groups)
    runtime_site.configure(populateEtcDynamically=0, etcPath=etc, maxGroupCount=2)
    assert _in(runtime_site, "cat", "/etc/group").splitlines() == [
        f"g0:x:5000:{TEST_USER}",
        f"g1:x:5001:{TEST_USER}",
        "g2:x:5002:",
        "g3:x:5003:",
        f"{TEST_USER}:x:{gid_of(TEST_USER)}:",
    ]


def test_etc_path_writable_by_others_isassert_refused(runtime_site: Site) -> None:
    etc = _etc_path(runtime_site, "")
    (etc / "group").chmod(0o666)
    runtime_site.configure(populateEtcDynamically=0, etcPath=etc)
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert result.returncode == 1
    assert "must be owned by root and not writable by group or others" in result.stderr


def test_generated_passwd_and_group(runtime_site: Site) -> None:
    passwd = _in(runtime_site, "cat", "/etc/passwd")
    assert passwd.startswith(f"{TEST_USER}:x:{uid_of(TEST_USER)}:{gid_of(TEST_USER)}:")
    group = _in(runtime_site, "cat", "/etc/group").splitlines()
    assert f"{TEST_USER}:x:{gid_of(TEST_USER)}:{TEST_USER}" in group
    assert f"{TEST_GROUP}:x:{gid_of(TEST_GROUP)}:{TEST_USER}" in group
    assert "nsswitch.conf" in _in(runtime_site, "ls", "/etc")


def test_etc_contents(runtime_site: Site) -> None:
    script = (
        "readlink /etc/mtab; cat /etc/image.d/entry; ls /etc/ssh | wc -l; "
        "wc -c < /etc/shadow; test -e /etc/hosts && echo hosts"
    )
    lines = _in(runtime_site, "sh", "-c", script).splitlines()
    assert lines == ["/proc/mounts", "image directory entry", "0", "0", "hosts"]


def test_image_var_opt_and_large_files(runtime_site: Site) -> None:
    script = "ls -d /var/lib/image-state; cat /opt/app/hello; wc -c < /usr/share/big.bin"
    assert _in(runtime_site, "sh", "-c", script).split() == [
        "/var/lib/image-state",
        "hello",
        "from",
        "opt",
        str(6 * 1024 * 1024),
    ]


def test_root_files_show_as_nobody(runtime_site: Site) -> None:
    # Only the user's own uid is mapped in the unprivileged namespace.
    assert _in(runtime_site, "stat", "-c", "%u", "/bin/busybox") == "65534\n"


def test_container_root_is_read_only_unless_configured(runtime_site: Site) -> None:
    touch = ("sh", "-c", "touch /newfile && echo made")
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", *touch)
    assert "Read-only file system" in result.stderr
    runtime_site.configure(mountUdiRootWritable=1)
    assert _in(runtime_site, *touch) == "made\n"


def test_opt_udi_image_is_read_only(runtime_site: Site) -> None:
    udi = runtime_site.directory("udiImage")
    (udi / "bin").mkdir()
    (udi / "bin" / "tool").write_text("#!/bin/sh\necho site tool\n")
    (udi / "bin" / "tool").chmod(0o755)
    runtime_site.configure(optUdiImage=udi)
    assert _in(runtime_site, "/opt/udiImage/bin/tool") == "site tool\n"
    result = runtime_site.run(
        f"--image={runtime_site.images.ref('main')}", "touch", "/opt/udiImage/bin/x"
    )
    assert result.returncode != 0


def test_site_environment_and_modules(runtime_site: Site) -> None:
    module_files = runtime_site.directory("mpich")
    (module_files / "lib").mkdir()
    (module_files / "lib" / "libmpi.so").write_text("not really\n")
    runtime_site.configure(
        "siteEnv=SHIFTER_RUNTIME=1",
        "siteEnvPrepend=PATH=/opt/udiImage/bin",
        "siteEnvUnset=UNWANTED",
        f"module_mpich_copyPath={module_files}",
        "module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib",
        "module_other_siteEnv=OTHER=1",
        "defaultModules=mpich",
    )
    env = {"UNWANTED": "x", "KEPT": "yes"}
    out = output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}", "env", env=env))
    variables = dict(line.split("=", 1) for line in out.splitlines())
    assert variables["SHIFTER_RUNTIME"] == "1"
    assert variables["PATH"] == "/opt/udiImage/bin:/usr/bin:/bin"
    assert variables["LD_LIBRARY_PATH"] == "/opt/udiImage/modules/mpich/lib"
    assert variables["KEPT"] == "yes"
    assert "UNWANTED" not in variables
    assert "OTHER" not in variables
    listing = _in(runtime_site, "ls", "/opt/udiImage/modules/mpich/lib")
    assert listing == "libmpi.so\n"
    other = output_of(
        runtime_site.run(f"--image={runtime_site.images.ref('main')}", "--module=other", "env")
    )
    assert "OTHER=1" in other
    assert "LD_LIBRARY_PATH" not in other


def test_unknown_module(runtime_site: Site) -> None:
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "-m", "nope", "true")
    assert result.returncode == 1
    assert "--module: unknown shifter module 'nope'" in result.stderr


def _hook(site: Site, name: str, body: str) -> Path:
    hook = site.root / name
    hook.write_text(f"#!/bin/sh\n{body}\n")
    hook.chmod(0o755)
    return hook


def test_site_hooks_prepare_mount_points(runtime_site: Site) -> None:
    shared = runtime_site.directory("hooked")
    (shared / "f").write_text("nested\n")
    pre = _hook(runtime_site, "premount.sh", "mkdir -p global")
    post = _hook(runtime_site, "postmount.sh", "ln -s global/u1 u1link")
    runtime_site.configure(
        sitePreMountHook=pre, sitePostMountHook=post, siteFs=f"{shared}:/global/u1"
    )
    assert _in(runtime_site, "cat", "/global/u1/f", "/u1link/f") == "nested\nnested\n"


def test_a_failing_hook_stops_the_launch(runtime_site: Site) -> None:
    pre = _hook(runtime_site, "fail.sh", "echo cannot do that >&2; exit 3")
    runtime_site.configure(sitePreMountHook=pre)
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert result.returncode == 1
    assert f"sitePreMountHook {pre} failed with exit status 3" in result.stderr
    assert "cannot do that" in result.stderr


def test_a_hook_not_owned_by_root_isassert_refused(runtime_site: Site) -> None:
    pre = _hook(runtime_site, "mine.sh", "true")
    os.chown(pre, uid_of(TEST_USER), -1)
    runtime_site.configure(sitePreMountHook=pre)
    result = runtime_site.run(f"--image={runtime_site.images.ref('main')}", "true")
    assert result.returncode == 1
    assert "must be owned by root" in result.stderr


def test_module_userhook_runs_in_the_container_as_the_user(runtime_site: Site) -> None:
    module_files = runtime_site.directory("hookmod")
    out = runtime_site.directory("out", 0o777)
    (module_files / "check.sh").write_text(f"id -u > {out}/ran; pwd >> {out}/ran\n")
    runtime_site.configure(
        f"module_check_copyPath={module_files}",
        "module_check_userhook=/opt/udiImage/modules/check/check.sh",
    )
    image = f"--image={runtime_site.images.ref('main')}"
    output_of(runtime_site.run(image, "--module=check", "--workdir=/opt", "true"))
    assert (out / "ran").read_text() == f"{uid_of(TEST_USER)}\n/opt\n"
