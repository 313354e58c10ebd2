"""imagemanager.json: every rule of the model, with its key, line and sentence."""

from __future__ import annotations

import pytest

from shifter.gateway.config import CONFIG_HINT
from tests.unit.test_gateway_config import LOCAL, REMOTE, config_with, only_problem

pytestmark = pytest.mark.unit

RULES = [
    (
        {"Platforms": {"c": {"accesstype": "lcal"}}},
        "Platforms.c.accesstype",
        'must be "local" or "remote", not "lcal"',
    ),
    (
        {"Platforms": {"c": {"accesstype": "local"}}},
        "Platforms.c.local",
        'is required with accesstype "local": {"imageDir": "/images"}',
    ),
    (
        {"Platforms": {"c": {**REMOTE, "host": []}}},
        "Platforms.c.host",
        'is required with accesstype "remote": a list of host names',
    ),
    (
        {"Platforms": {"c": {"accesstype": "remote", "host": ["login01"]}}},
        "Platforms.c.ssh",
        'is required with accesstype "remote": {"username": ..., "imageDir": ...}',
    ),
    (
        {"Platforms": {"c": {**REMOTE, "ssh": {"imageDir": "/images"}}}},
        "Platforms.c.ssh.username",
        "is required",
    ),
    (
        {"Platforms": {"c": {**REMOTE, "ssh": {"username": "-oProxyCommand=x", "imageDir": "/i"}}}},
        "Platforms.c.ssh.username",
        'must be a user name, not "-oProxyCommand=x"',
    ),
    (
        {"Platforms": {"c": {**REMOTE, "host": ["-oProxyCommand=x"]}}},
        "Platforms.c.host[0]",
        'host name "-oProxyCommand=x" must start with a letter or digit and contain only '
        "letters, digits, '.', '_', ':' and '-'",
    ),
    (
        {"Platforms": {"c": {**LOCAL, "admins": "root"}}},
        "Platforms.c.admins",
        'must be a list of user names; for one user write ["root"]',
    ),
    (
        {"Platforms": {"my/cluster": LOCAL}},
        "Platforms.my/cluster",
        'platform name "my/cluster" must start with a letter or digit and contain only '
        "letters, digits, '.', '_', ':' and '-'",
    ),
    (
        {"Platforms": {"c": {**LOCAL, "mungeSocketPath": "munge.socket"}}},
        "Platforms.c.mungeSocketPath",
        'must be an absolute path, not "munge.socket"',
    ),
    (
        {"Locations": {"hub": {"remotetype": "dockerhub"}}, "DefaultImageLocation": "hub"},
        "Locations.hub.remotetype",
        '"dockerhub" was deprecated in the original Shifter and is not supported; use '
        '"dockerv2" (Docker Hub speaks it too)',
    ),
    (
        {"Locations": {"hub": {"remotetype": "oci"}}, "DefaultImageLocation": "hub"},
        "Locations.hub.remotetype",
        'must be "dockerv2", not "oci"',
    ),
    (
        {"Locations": {"r": {"url": "https://r.example.org/v2/"}}, "DefaultImageLocation": "r"},
        "Locations.r.url",
        'must be a base URL without path, query or credentials, not "https://r.example.org/v2/" '
        "(the registry API is always at /v2/ on the host)",
    ),
    (
        {"Locations": {"r": {"url": "ftp://r.example.org"}}, "DefaultImageLocation": "r"},
        "Locations.r.url",
        'must be an https:// or http:// URL with a host, not "ftp://r.example.org"',
    ),
    (
        {"Locations": {"r": {"authMethod": "bearer"}}, "DefaultImageLocation": "r"},
        "Locations.r.authMethod",
        'must be "token" or "basic", not "bearer"',
    ),
    (
        {"Locations": {"r": {"sslcacert": "ca.pem"}}, "DefaultImageLocation": "r"},
        "Locations.r.sslcacert",
        'must be an absolute path, not "ca.pem"',
    ),
    (
        {"Locations": {"quay.io": {}}, "DefaultImageLocation": "ghcr.io"},
        "DefaultImageLocation",
        "'ghcr.io' is not one of the Locations (quay.io)",
    ),
    (
        {"Authentication": "mock"},
        "Authentication",
        '"mock" is refused: it believes whatever user name a client sends, so anyone could '
        'act as anyone, admins included; use "munge"',
    ),
    ({"Authentication": "ldap"}, "Authentication", 'must be "munge", not "ldap"'),
    (
        {"DefaultImageFormat": "xfs"},
        "DefaultImageFormat",
        'must be "squashfs", "ext4" or "cramfs", not "xfs"',
    ),
    (
        {"ImageExpirationTimeout": "90:00:00"},
        "ImageExpirationTimeout",
        'must be days:hours:minutes:seconds (four whole numbers, such as "90:00:00:00"), '
        'not "90:00:00"',
    ),
    (
        {"ImageExpirationTimeout": 7776000},
        "ImageExpirationTimeout",
        'must be a string "D:HH:MM:SS" such as "90:00:00:00", not 7776000',
    ),
    ({"PullUpdateTimeout": -1}, "PullUpdateTimeout", "must be at least 0, not -1"),
    ({"WorkerThreads": 0}, "WorkerThreads", "must be at least 1, not 0"),
    ({"WorkerThreads": True}, "WorkerThreads", "must be a whole number, not true"),
    ({"WorkerThreads": 2.5}, "WorkerThreads", "must be a whole number, not 2.5"),
    ({"LayerDownloadConcurrency": 0}, "LayerDownloadConcurrency", "must be at least 1, not 0"),
    ({"Metrics": "yes"}, "Metrics", 'must be true or false, not "yes"'),
    ({"CacheDirectory": "cache"}, "CacheDirectory", 'must be an absolute path, not "cache"'),
    ({"ExpandDirectory": None}, "ExpandDirectory", "must be an absolute path, not null"),
    ({"examiner": "exam.sh"}, "examiner", 'must be an absolute path, not "exam.sh"'),
    (
        {"LogLevel": "verbose"},
        "LogLevel",
        'must be debug, info, warning, error or critical, not "verbose"',
    ),
    (
        {"ImportUsers": "alice"},
        "ImportUsers",
        'must be "all", "none" or a list of user names, not "alice"; for one user write ["alice"]',
    ),
    (
        {"ConverterOptions": {"squashfz": "-comp zstd"}},
        "ConverterOptions",
        'unknown image format "squashfz"; use squashfs, ext4 or cramfs',
    ),
    (
        {"ConverterOptions": {"squashfs": {"comp": "zstd"}}},
        "ConverterOptions",
        'options for squashfs must be a string or a list of strings, not {"comp": "zstd"}',
    ),
    (
        {"ConverterOptions": ["-no-xattrs"]},
        "ConverterOptions",
        "must be an object mapping an image format to options, such as "
        '{"squashfs": "-comp zstd"}, not ["-no-xattrs"]',
    ),
    (
        {"DefaultPlatform": "amd64"},
        "DefaultPlatform",
        'must be an OCI platform such as "linux/amd64" or "linux/arm64/v8", not "amd64"',
    ),
    ({"ImageOwnership": "user"}, "ImageOwnership", 'must be "root" or "preserve", not "user"'),
    (
        {"MetadataStore": "mysql://db/shifter"},
        "MetadataStore",
        'has the unsupported scheme "mysql"; use sqlite:// or postgresql://',
    ),
    (
        {"MetadataStore": "sqlite:///imagegw.sqlite"},
        "MetadataStore",
        'must name an absolute SQLite file with four slashes, such as "sqlite:////var/lib/'
        'shifter/imagegw.sqlite" (an in-memory or relative database would not be shared by '
        "the gateway's threads or survive a restart)",
    ),
    (
        {"MetadataStore": "mongodb://localhost/"},
        "MetadataStore",
        'has the unsupported scheme "mongodb"; use sqlite:// or postgresql://',
    ),
    ({"Platforms": []}, "Platforms", "must be an object {...}, not []"),
    ({"Locations": {"r": "https://r"}}, "Locations.r", 'must be an object {...}, not "https://r"'),
]


@pytest.mark.parametrize(("data", "key", "message"), RULES, ids=[r[1] for r in RULES])
def test_each_rule_reports_its_key_line_and_sentence(data: dict, key: str, message: str) -> None:
    error = only_problem(**data)
    assert (error.key, error.message) == (key, message)
    assert error.source == "gw.json"
    assert error.line is not None and error.line >= 2
    assert str(error) == f"gw.json:{error.line} key {key!r}: {message}"
    assert error.hint == CONFIG_HINT


def test_the_default_location_must_be_listed_when_locations_are() -> None:
    error = only_problem(Locations={"quay.io": {}})
    assert str(error) == (
        "gw.json key 'DefaultImageLocation': is not set, and its default "
        "'registry-1.docker.io' is not one of the Locations (quay.io)"
    )


def test_a_postgresql_password_never_appears_in_a_message() -> None:
    error = only_problem(MetadataStore="postgres://admin:s3cret@db/shifter")
    assert "s3cret" not in str(error)
    assert error.message == 'has the unsupported scheme "postgres"; use sqlite:// or postgresql://'


@pytest.mark.parametrize(
    ("url", "driver_url"),
    [
        ("sqlite:////srv/gw.sqlite", "sqlite:////srv/gw.sqlite"),
        (
            "postgresql://gw:pw@db.example.org/shifter",
            "postgresql+psycopg://gw:pw@db.example.org/shifter",
        ),
        ("postgresql+psycopg://gw@db/shifter", "postgresql+psycopg://gw@db/shifter"),
    ],
)
def test_metadata_store_accepts_sqlite_and_postgresql(url: str, driver_url: str) -> None:
    config = config_with(MetadataStore=url)
    assert (config.metadata_store, config.metadata_store_url) == (url, driver_url)
