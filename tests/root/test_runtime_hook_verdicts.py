"""A module userhook with the line `# shifter: remember-success` runs once per container
(image, volumes, modules) and hook text; later launches skip it (shifter.runtime.site.hooks),
on the unprivileged path and when entering a setupRoot container alike. A failure is never
remembered, and a hook without the line runs every time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shifter.runtime.site.hooks import REMEMBER_MARKER
from tests.services.runtime_fixtures import TEST_USER, Site, output_of, remove_user_dirs
from tests.services.setuproot_fixtures import RootSite, make_root_site, setup_ok

pytestmark = pytest.mark.root
HOOK = "/opt/udiImage/modules/check/check.sh"


@pytest.fixture
def clean_user_dir() -> Iterator[None]:
    remove_user_dirs(TEST_USER)
    yield
    remove_user_dirs(TEST_USER)


def _module(site: Site, body: str, *, remember: bool = True) -> tuple[list[str], Path]:
    """A module `check` whose userhook appends a line to `runs` (then runs `body`): the
    config lines and the file."""
    module_files = site.directory("hookmod")
    out = site.directory("out", 0o777)
    marker = REMEMBER_MARKER.decode() if remember else "# runs every time"
    (module_files / "check.sh").write_text(f"{marker}\necho ran >> {out}/runs\n{body}\n")
    lines = [f"module_check_copyPath={module_files}", f"module_check_userhook={HOOK}"]
    return lines, out / "runs"


def _runs(file: Path) -> int:
    return len(file.read_text().splitlines()) if file.exists() else 0


def test_a_userhook_allowing_it_runs_once_per_container_and_text(
    runtime_site: Site, clean_user_dir: None
) -> None:
    lines, runs = _module(runtime_site, "true")
    runtime_site.configure(*lines)
    main, plain = (f"--image={runtime_site.images.ref(n)}" for n in ("main", "plain"))
    for _ in range(3):
        output_of(runtime_site.run(main, "--module=check", "true", cwd=Path("/")))
    assert _runs(runs) == 1
    output_of(runtime_site.run(plain, "--module=check", "true", cwd=Path("/")))
    assert _runs(runs) == 2  # another image
    output_of(runtime_site.run(main, "--module=check", "--volume=/tmp:/data", "true",
                               cwd=Path("/")))  # fmt: skip
    assert _runs(runs) == 3  # another container: volumes
    hook = runtime_site.root / "hookmod" / "check.sh"
    hook.write_text(hook.read_text() + "# changed\n")
    output_of(runtime_site.run(main, "--module=check", "true", cwd=Path("/")))
    output_of(runtime_site.run(main, "--module=check", "true", cwd=Path("/")))
    assert _runs(runs) == 4  # another text: once more, then remembered again


def test_a_userhook_without_the_line_runs_every_time(
    runtime_site: Site, clean_user_dir: None
) -> None:
    lines, runs = _module(runtime_site, "true", remember=False)
    runtime_site.configure(*lines)
    for _ in range(2):
        output_of(runtime_site.run(f"--image={runtime_site.images.ref('main')}",
                                   "--module=check", "true", cwd=Path("/")))  # fmt: skip
    assert _runs(runs) == 2


def test_a_failing_userhook_is_never_remembered(runtime_site: Site, clean_user_dir: None) -> None:
    lines, runs = _module(runtime_site, "echo not this image >&2; exit 3")
    runtime_site.configure(*lines)
    for _ in range(2):
        result = runtime_site.run(f"--image={runtime_site.images.ref('main')}",
                                  "--module=check", "true", cwd=Path("/"))  # fmt: skip
        assert result.returncode == 1
        assert f"module_check_userhook {HOOK} failed with exit status 3" in result.stderr
        assert "not this image" in result.stderr
    assert _runs(runs) == 2


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def test_entering_a_setuproot_container_remembers_too(
    root_site: RootSite, clean_user_dir: None
) -> None:
    lines, runs = _module(root_site.site, "true")
    root_site.configure(*lines)
    setup_ok(root_site, "-m", "check")
    image = f"--image={root_site.images.ref('main')}"
    for _ in range(3):
        mounts = output_of(root_site.run(image, "--module=check", "cat", "/proc/self/mountinfo"))
        assert " squashfs " in mounts  # entered, not built
    assert _runs(runs) == 1
