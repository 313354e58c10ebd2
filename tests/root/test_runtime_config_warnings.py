"""udiRoot.conf's warnings (deprecated keys, a key set twice) reach the site: on stderr
with `shifter -v` and `setupRoot -V`, and always from `shifter --check-config`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.services.runtime_fixtures import Site, assert_refused, output_of
from tests.services.setuproot_fixtures import RootSite, make_root_site

DEPRECATED = "kmodBasePath is deprecated and has no effect; remove it"
REPEATED = "rootfsType is set again; this replaces the value from line 4"


def _configure_with_warnings(site: Site) -> None:
    # rootfsType is line 4 of what `configure` writes; the extra lines come last (7, 8).
    site.configure("kmodBasePath=/lib/modules", "rootfsType=tmpfs")


def test_check_config_prints_the_warnings(runtime_site: Site) -> None:
    _configure_with_warnings(runtime_site)
    result = runtime_site.run("--check-config")
    assert output_of(result) == f"{runtime_site.config}: loads (2 warnings)\n"
    assert result.stderr.splitlines() == [
        f"shifter: warning: {runtime_site.config}:7: {DEPRECATED}",
        f"shifter: warning: {runtime_site.config}:8: {REPEATED}",
    ]
    runtime_site.configure()
    clean = runtime_site.run("--check-config", user=None)  # root may check too
    assert (clean.returncode, clean.stdout, clean.stderr) == (
        0, f"{runtime_site.config}: loads (0 warnings)\n", ""
    )  # fmt: skip
    runtime_site.configure("noSuchKey=1")
    assert_refused(runtime_site.run("--check-config"), "unknown key 'noSuchKey'")


def test_verbose_launch_prints_the_warnings_and_a_quiet_one_does_not(runtime_site: Site) -> None:
    _configure_with_warnings(runtime_site)
    image = f"--image={runtime_site.images.ref('main')}"
    quiet = runtime_site.run(image, "true")
    assert (quiet.returncode, quiet.stderr) == (0, "")
    verbose = runtime_site.run("-v", image, "true")
    assert verbose.returncode == 0, verbose.stderr
    assert f"shifter: warning: {runtime_site.config}:7: {DEPRECATED}\n" in verbose.stderr
    assert f"shifter: warning: {runtime_site.config}:8: {REPEATED}\n" in verbose.stderr


@pytest.fixture
def root_site(runtime_site: Site) -> Iterator[RootSite]:
    yield from make_root_site(runtime_site)


def test_setuproot_verbose_prints_the_warnings(root_site: RootSite) -> None:
    root_site.configure("kmodBasePath=/lib/modules")
    config = root_site.site.config
    quiet = root_site.setup()
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert root_site.unsetup().returncode == 0
    verbose = root_site.setup("-V")
    assert verbose.returncode == 0, verbose.stderr
    assert f"setupRoot: warning: {config}:8: {DEPRECATED}\n" in verbose.stderr
