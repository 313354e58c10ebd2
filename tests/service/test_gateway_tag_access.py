"""Access belongs to the tag: one image under a public tag and a private tag, end to end.

The same image (one manifest, one id) is pushed to the anonymous registry and to the
password-protected one. One user pulls the public tag; another logs in and pulls the
private tag with `--user` or `--group`; in both orders. Then, with `shifterimg` and
`shifter` run by the real users (`runuser`) against a real gateway process:

- the public tag works for everyone, the private tag only for its ACL, whatever the
  order of the pulls (a private pull never hides a public tag, a public pull never opens a
  private tag);
- the image's files admit the union (public, since a public tag points at them), so an
  `id:` launch works for everyone;
- expiring the public tag leaves the private tag working for its users, and the files
  narrow back to them.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shifter.image.meta import read_meta
from shifter.ocibuild import catalog
from shifter.ocibuild.push import push_image
from tests.service.test_shifterimg_e2e import HEX_ID, ok, status_lines
from tests.service.test_transfer_support import shared_dir
from tests.services.gateway_fixtures import (
    ADMIN,
    BIN,
    GROUP_A,
    PRIVATE,
    SYSTEM,
    USER_A,
    USER_B,
    USER_C,
    GatewayEnv,
    GatewayServer,
    Site,
    TlsRelay,
    make_env,
    uid_of,
    wait_for,
)
from tests.services.registries import RegistryEndpoint

OUTSIDER = USER_C  # in neither ACL


@dataclass
class TwoTags:
    env: GatewayEnv
    site: Site
    public: str  # docker tags, as users type them
    private: str

    def shifter(self, user: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["/usr/sbin/runuser", "-u", user, "--", str(BIN / "shifter"), *args]
        return subprocess.run(argv, env=self.site.env(user), capture_output=True, text=True,
                              timeout=120)

    def runs(self, user: str, image: str) -> bool:
        result = self.shifter(user, f"--image={image}", "cat", "/etc/os-release")
        return result.returncode == 0 and "busybox" in result.stdout.lower()

    def lookup(self, user: str, tag: str) -> str | None:
        result = self.site.run("lookup", tag, user=user)
        return result.stdout.strip() if result.returncode == 0 else None

    def pull_public(self) -> str:
        pulled = ok(self.site.run("pull", self.public, user=USER_A))
        assert status_lines(pulled)[-1][2] == "READY", pulled
        return ok(self.site.run("lookup", self.public, user=USER_A)).strip()

    def pull_private(self, acl: str) -> str:
        option = ("--user", USER_B) if acl == "--user" else ("--group", GROUP_A)
        pulled = self.site.run("pull", *option, self.private, user=USER_B)
        assert status_lines(ok(pulled))[-1][2] == "READY", pulled.stderr
        return ok(self.site.run("lookup", self.private, user=USER_B)).strip()

    def files(self, image_id: str) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """Mode bits for others of the image file, and the `.meta` ACL lines."""
        image = self.env.image_dir / f"{image_id}.squashfs"
        meta = read_meta(str(self.env.image_dir / f"{image_id}.meta"))
        return stat.S_IMODE(image.stat().st_mode) & 0o007, meta.user_acl, meta.group_acl


@pytest.fixture
def two_tags(
    munged: Any, registry_anon: RegistryEndpoint, registry_basic: RegistryEndpoint,
    gateway_servers: Callable[..., GatewayServer], repo_name: str,
) -> Iterator[TwoTags]:
    built = catalog.build("busybox")
    push_image(built, registry_anon.url, repo_name, "v1")
    push_image(built, registry_basic.url, repo_name, "v1",
               credentials=("pusher", registry_basic.credentials["pusher"]))
    host, port = registry_basic.netloc.rsplit(":", 1)
    # Under /tmp and searchable: the users open the image files the gateway publishes.
    with shared_dir("shifter-tag-access-") as top, TlsRelay((host, int(port))) as relay:
        env = make_env(top, munged, registry_anon, f"sqlite:///{top}/gateway.sqlite")
        env.add_location(PRIVATE, relay.url, ca_file=str(relay.ca_file))
        env.data["ImportUsers"] = [USER_A, USER_B]
        env.image_dir.chmod(0o755)
        server = gateway_servers(env.write())
        site = Site(top / "site", munged, [server.url])
        site.directory.mkdir(mode=0o755)
        for name in ("udiMount", "loopMount"):
            (top / name).mkdir(mode=0o755)
        site.config.write_text(
            f"udiMount={top / 'udiMount'}\nloopMount={top / 'loopMount'}\n"
            f"imagePath={env.image_dir}\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"
            f"system={SYSTEM}\nimageGateway={server.url}\ngatewayTimeout=30\n")
        site.config.chmod(0o644)
        password = registry_basic.credentials["puller"]
        ok(site.run("login", PRIVATE, "--username", "puller", "--password-stdin",
                    user=USER_B, stdin=f"{password}\n"))
        yield TwoTags(env, site, f"{repo_name}:v1", f"{PRIVATE}/{repo_name}:v1")


def _check_both_tags(tags: TwoTags, image_id: str, acl: str) -> None:
    # The public tag: everyone, by lookup and by launch.
    for user in (USER_A, USER_B, OUTSIDER):
        assert tags.lookup(user, tags.public) == image_id, user
    assert tags.runs(OUTSIDER, f"docker:{tags.public}")
    # The private tag: its ACL only (USER_A is in GROUP_A: in the --group ACL).
    admitted = {USER_B} | ({USER_A} if acl == "--group" else set())
    for user in (USER_A, USER_B, OUTSIDER):
        assert (tags.lookup(user, tags.private) == image_id) is (user in admitted), user
    assert tags.runs(USER_B, f"docker:{tags.private}")
    refused = tags.shifter(OUTSIDER, f"--image=docker:{tags.private}", "true")
    assert refused.returncode != 0
    listed = ok(tags.site.run("images", user=OUTSIDER))
    assert tags.public in listed and tags.private not in listed
    # The files admit the union: public, as a public tag points at them.
    assert tags.files(image_id) == (0o004, (), ())
    assert tags.runs(OUTSIDER, f"id:{image_id}")


@pytest.mark.parametrize("acl", ["--user", "--group"])
def test_a_private_pull_never_hides_a_public_tag(two_tags: TwoTags, acl: str) -> None:
    image_id = two_tags.pull_public()
    assert HEX_ID.match(image_id)
    assert two_tags.pull_private(acl) == image_id  # the same image: one id
    _check_both_tags(two_tags, image_id, acl)


@pytest.mark.parametrize("acl", ["--user", "--group"])
def test_a_public_pull_never_opens_a_private_tag(two_tags: TwoTags, acl: str) -> None:
    image_id = two_tags.pull_private(acl)
    # Before the public pull: the files are the private tag's alone.
    others, users, groups = two_tags.files(image_id)
    assert others == 0
    if acl == "--user":
        assert (users, groups) == ((uid_of(USER_B),), ())
    else:
        assert GROUP_A and groups and not users
    assert two_tags.lookup(OUTSIDER, two_tags.private) is None
    assert not two_tags.runs(OUTSIDER, f"id:{image_id}")

    assert two_tags.pull_public() == image_id
    _check_both_tags(two_tags, image_id, acl)

    # Expiring the public tag: the private one keeps working for its users, and the
    # files narrow back to them.
    assert ok(two_tags.site.run("expire", two_tags.public, user=ADMIN)) == ""
    wait_for(lambda: two_tags.files(image_id)[0] == 0, what="the files to narrow")
    assert two_tags.lookup(OUTSIDER, two_tags.public) is None
    assert two_tags.lookup(USER_B, two_tags.private) == image_id
    assert two_tags.runs(USER_B, f"docker:{two_tags.private}")
    assert not two_tags.runs(OUTSIDER, f"id:{image_id}")
    meta = two_tags.env.image_dir / f"{image_id}.meta"
    assert stat.S_IMODE(meta.stat().st_mode) & 0o007 == 0
    assert os.getxattr(meta, "system.posix_acl_access")


def _tool_image(directory: Path, name: str, says: str) -> Path:
    """A squashfs with busybox as `cat` and a file saying whose image it is."""
    tree = directory / f"{name}.tree"
    (tree / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", tree / "bin" / "busybox")
    (tree / "bin" / "cat").symlink_to("busybox")
    (tree / "whose").write_text(f"{says}\n")
    image = directory / f"{name}.sqsh"
    subprocess.run(["mksquashfs", str(tree), str(image), "-all-root", "-quiet", "-noappend"],
                   check=True, capture_output=True)
    image.chmod(0o644)
    return image


def test_a_custom_tag_cannot_be_taken_over(two_tags: TwoTags) -> None:
    top = two_tags.env.root
    mine, theirs = _tool_image(top, "mine", "alice's"), _tool_image(top, "theirs", "bob's")
    imported = ok(two_tags.site.run("import", str(mine), "tool:v1", user=USER_A))
    assert status_lines(imported)[-1][2] == "READY"

    taken = two_tags.site.run("import", str(theirs), "tool:v1", user=USER_B)
    assert taken.returncode == 1
    assert "custom:tool:v1 belongs to another user" in taken.stderr, taken.stderr
    expired = two_tags.site.run("expire", "custom:tool:v1", user=USER_B)
    assert expired.returncode == 1 and "belongs to another user" in expired.stderr
    ran = two_tags.shifter(USER_A, "--image=custom:tool:v1", "cat", "/whose")
    assert (ran.returncode, ran.stdout) == (0, "alice's\n"), ran.stderr
    # Under a name of its own, the other user's image is theirs.
    ok(two_tags.site.run("import", str(theirs), "bobtool:v1", user=USER_B))
    ran = two_tags.shifter(USER_A, "--image=custom:bobtool:v1", "cat", "/whose")
    assert ran.stdout == "bob's\n", ran.stderr
