"""Test tiers by directory, and session-scoped real services started on first use.

Nothing here starts at import or collection time: a service starts when the first test that
asks for its fixture runs, so `pytest tests/unit` never touches a registry or munged. Each
service is stopped by PID when the session ends, whether its tests passed or not. A missing
tool fails the tests that need it (never a silent skip) and says how to install it.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.services.names import fresh_repo_name

# Fixture modules of the other services, one file each, so each can grow on its own.
pytest_plugins = [
    "tests.services.postgres_fixtures",
    "tests.services.sshd_fixtures",
    "tests.services.gateway_fixtures",
    "tests.services.runtime_fixtures",
    "tests.services.slurm_fixtures",
]

# The service modules pull in httpx, cryptography, bcrypt and PyJWT: imported in the fixtures
# that need them, so collecting the unit tier stays cheap.
if TYPE_CHECKING:
    from tests.services.munged import MungeDaemon
    from tests.services.registries import Kind, RegistryEndpoint
    from tests.services.token_issuer import TokenIssuer

TESTS_DIR = Path(__file__).parent
TIER_BY_DIRECTORY = {"unit": "unit", "root": "root", "service": "service"}


_PREVIOUS_SIGTERM = pytest.StashKey[object]()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # The services run in their own sessions (a Ctrl-C in the terminal does not reach them)
    # and only fixture teardown stops them. pytest tears down on KeyboardInterrupt but dies
    # outright on SIGTERM (a CI timeout, `kill`), so SIGTERM is made an interrupt too.
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        config.stash[_PREVIOUS_SIGTERM] = signal.signal(signal.SIGTERM, _interrupt)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS_SIGTERM, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            relative = item.path.relative_to(TESTS_DIR)
        except ValueError:
            continue
        tier = TIER_BY_DIRECTORY.get(relative.parts[0]) if len(relative.parts) > 1 else None
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


def require_tool(tool: str, package: str) -> None:
    """Fail (not skip) the requesting tests when a service binary is not installed."""
    if shutil.which(tool) is None:
        pytest.fail(
            f"{tool} not found: install the Debian package {package} "
            f"(sudo scripts/install.sh installs everything the tests need)",
            pytrace=False,
        )


def _registry(kind: Kind) -> Iterator[RegistryEndpoint]:
    from tests.services.registries import running_registry

    require_tool("docker-registry", "docker-registry")
    with running_registry(kind) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def registry_anon() -> Iterator[RegistryEndpoint]:
    """Anonymous plain-HTTP registry: anyone may pull and push."""
    yield from _registry("anon")


@pytest.fixture(scope="session")
def registry_tls() -> Iterator[RegistryEndpoint]:
    """Anonymous HTTPS registry; its cert is signed by the throw-away CA in `ca_file`."""
    yield from _registry("tls")


@pytest.fixture(scope="session")
def registry_basic() -> Iterator[RegistryEndpoint]:
    """htpasswd registry; `credentials` holds pusher and puller (both may push)."""
    yield from _registry("basic")


@pytest.fixture(scope="session")
def registry_token() -> Iterator[RegistryEndpoint]:
    """Bearer-token registry; `issuer` is the token server, `credentials` its user table."""
    yield from _registry("token")


@pytest.fixture
def token_issuer(registry_token: RegistryEndpoint) -> Iterator[TokenIssuer]:
    """The token registry's issuer, back to default settings after each test that uses it."""
    issuer = registry_token.issuer
    assert issuer is not None
    issuer.reset()
    try:
        yield issuer
    finally:
        issuer.reset()


@pytest.fixture(scope="session")
def munged() -> Iterator[MungeDaemon]:
    """A private munged; clients reach it with `-S munged.socket` (any user may)."""
    require_tool("munged", "munge")
    require_tool("munge", "munge")
    require_tool("unmunge", "munge")
    from tests.services.munged import running_munged

    with running_munged() as daemon:
        yield daemon


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repository name (`test/<test-name>-<random>`) that no other test or run uses."""
    return fresh_repo_name(request.node.name)


@pytest.fixture
def make_repo_name(request: pytest.FixtureRequest) -> Callable[..., str]:
    """For tests needing several names or a prefix: `make_repo_name(prefix="private")`."""

    def make(prefix: str = "test") -> str:
        return fresh_repo_name(request.node.name, prefix)

    return make
