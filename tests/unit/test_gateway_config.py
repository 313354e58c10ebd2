"""imagemanager.json: every rule of the model, its messages, the loader and the documentation."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shifter.errors import ConfigError
from shifter.gateway import config as gwconfig
from shifter.gateway.config import (
    GatewayConfig,
    GatewayConfigError,
    UnknownLocationError,
    UnknownPlatformError,
    gateway_config_from_data,
    gateway_config_path,
    load_gateway_config,
    parse_gateway_config,
)
from shifter.gateway.config_source import iter_key_paths
from shifter.gateway.config_values import format_expiration, parse_expiration

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "etc" / "imagemanager.json.example"
DOC = ROOT / "docs" / "config-imagemanager.md"

LOCAL = {"accesstype": "local", "local": {"imageDir": "/images"}}
REMOTE = {
    "accesstype": "remote",
    "host": ["login01"],
    "ssh": {"username": "shifter", "imageDir": "/images"},
}

# The local-mode sample of the product documentation, as sites have it today.
DOCS_LOCAL_SAMPLE = """{
    "DefaultImageLocation": "registry-1.docker.io",
    "DefaultImageFormat": "squashfs",
    "PullUpdateTimeout": 300,
    "ImageExpirationTimeout": "90:00:00:00",
    "MongoDBURI":"mongodb://localhost/",
    "MongoDB":"Shifter",
    "CacheDirectory": "/images/cache/",
    "ExpandDirectory": "/images/expand/",
    "Locations": {
        "registry-1.docker.io": {
            "remotetype": "dockerv2",
            "authentication": "http"
        }
    },
    "Platforms": {
        "mycluster": {
            "mungeSocketPath": "/var/run/munge/munge.socket.2",
            "accesstype": "local",
            "admins": ["root"],
            "local": {
                "imageDir": "/images"
            }
        }
    }
}
"""


def config_with(**top: Any) -> GatewayConfig:
    """A config from top-level keys, through the same checks as a file."""
    return parse_gateway_config(json.dumps(top, indent=4), "gw.json")


def problems_of(text: str) -> list[str]:
    with pytest.raises(GatewayConfigError) as caught:
        parse_gateway_config(text, "gw.json")
    return str(caught.value).splitlines()


def only_problem(**top: Any) -> GatewayConfigError:
    with pytest.raises(GatewayConfigError) as caught:
        config_with(**top)
    assert len(caught.value.problems) == 1, str(caught.value)
    return caught.value


# ---- defaults ---------------------------------------------------------------------------


def test_defaults_need_no_file_and_allow_any_registry() -> None:
    config = GatewayConfig.default()
    assert config.source is None
    assert config.default_image_location == "registry-1.docker.io"
    assert config.default_image_format == "squashfs"
    assert config.pull_update_timeout == timedelta(seconds=300)
    assert config.image_expiration_timeout == timedelta(days=90)
    assert config.metadata_store == "sqlite:////var/lib/shifter/imagegw.sqlite"
    assert config.authentication == "munge"
    assert config.platforms == {}
    assert config.location_for("ghcr.io").url == "https://ghcr.io"
    assert config.location_for("localhost:5000").url == "https://localhost:5000"
    assert not config.import_enabled
    assert config.where("WorkerThreads") == "built-in default"


def test_an_empty_file_is_the_defaults() -> None:
    defaults = GatewayConfig.default().model_dump()
    assert parse_gateway_config("{}", "gw.json").model_dump() == defaults


def test_the_docs_local_sample_loads_and_warns_about_mongodb(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="shifter.gateway.config"):
        config = parse_gateway_config(DOCS_LOCAL_SAMPLE, "imagemanager.json")
    assert config.platform("mycluster").image_dir == "/images"
    assert config.cache_directory == "/images/cache/"
    assert caplog.messages == [
        "imagemanager.json:6 key 'MongoDBURI' is obsolete and ignored: image records now "
        "live in the database named by MetadataStore",
        "imagemanager.json:7 key 'MongoDB' is obsolete and ignored: image records now "
        "live in the database named by MetadataStore",
    ]


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("Broker", "redis://redis/", "key 'Broker' is obsolete and ignored: there are no"),
        ("DefaultLustreReplication", 1, "the original never used it either"),
        ("DefaultOstCount", 16, "the original never used it either"),
        ("PullUpdateTime", 300, "the pull timeout is PullUpdateTimeout"),
    ],
)
def test_obsolete_top_level_keys_warn_and_are_ignored(
    caplog: pytest.LogCaptureFixture, key: str, value: Any, expected: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="shifter.gateway.config"):
        config = config_with(**{key: value})
    assert config.model_dump() == GatewayConfig.default().model_dump()
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("gw.json:2 ")
    assert expected in caplog.messages[0]


def test_obsolete_platform_keys_warn_with_their_path(caplog: pytest.LogCaptureFixture) -> None:
    platform = {
        **LOCAL,
        "use_external": True,
        "policy_file": "/etc/containers/policy.json",
        "usergroupService": "ldap",
        "mountCommand": "/bin/mount",
        "ldap": {"userBase": "ou=People"},
    }
    with caplog.at_level(logging.WARNING, logger="shifter.gateway.config"):
        config = config_with(Platforms={"systema": platform})
    assert config.platform("systema").accesstype == "local"
    keys = [re.search(r"key '([^']+)'", message).group(1) for message in caplog.messages]
    assert keys == [
        "Platforms.systema.use_external",
        "Platforms.systema.policy_file",
        "Platforms.systema.usergroupService",
        "Platforms.systema.mountCommand",
        "Platforms.systema.ldap",
    ]
    assert "skopeo/umoci pull path is gone" in caplog.messages[0]


# ---- unknown keys and JSON problems ------------------------------------------------------


def test_unknown_key_in_a_platform_names_its_path_line_and_closest_key() -> None:
    text = '{\n  "Platforms": {\n    "mycluster": {\n      "acesstype": "local"\n    }\n  }\n}'
    assert problems_of(text) == [
        "gw.json:3 key 'Platforms.mycluster.accesstype': is required",
        "gw.json:4 key 'Platforms.mycluster.acesstype': is not a known key; "
        "did you mean 'accesstype'?",
    ]


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"WorkerThread": 4}, "WorkerThread", "did you mean 'WorkerThreads'?"),
        ({"loglevel": "info"}, "loglevel", "did you mean 'LogLevel'?"),
        (
            {"Locations": {"quay.io": {"authmethod": "t"}}, "DefaultImageLocation": "quay.io"},
            "Locations.quay.io.authmethod",
            "did you mean 'authMethod'?",
        ),
        (
            {"Platforms": {"c": {**REMOTE, "ssh": {**REMOTE["ssh"], "keyfile": "/k"}}}},
            "Platforms.c.ssh.keyfile",
            "did you mean 'key'?",
        ),
        (
            {"Platforms": {"c": {**LOCAL, "local": {"imageDir": "/i", "x": 1}}}},
            "Platforms.c.local.x",
            "the keys here are imageDir",
        ),
    ],
)
def test_unknown_keys_are_errors_at_any_level(data: dict, key: str, suggestion: str) -> None:
    error = only_problem(**data)
    assert error.key == key
    assert error.message == f"is not a known key; {suggestion}"
    assert error.line is not None


def test_a_json_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_gateway_config('{\n  "WorkerThreads": 4\n  "LogLevel": "info"\n}', "/etc/gw.json")
    assert caught.value.line == 3
    assert str(caught.value) == (
        "/etc/gw.json:3: is not valid JSON: Expecting ',' delimiter (column 3)"
    )
    assert caught.value.hint == "JSON allows no comments and no comma after the last item"


def test_absurdly_deep_nesting_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(ConfigError, match=r"^gw.json: nests JSON objects or lists too deeply"):
        parse_gateway_config('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "gw.json")


def test_the_top_level_must_be_an_object() -> None:
    with pytest.raises(ConfigError, match=r"^gw.json: must hold a JSON object \{...\} at the top"):
        parse_gateway_config("[1, 2]", "gw.json")


def test_a_key_given_twice_is_an_error_naming_both_lines() -> None:
    text = '{\n  "WorkerThreads": 4,\n  "LogLevel": "info",\n  "WorkerThreads": 8\n}'
    assert problems_of(text) == [
        "gw.json:4 key 'WorkerThreads': is given twice (lines 2 and 4); remove one"
    ]


def test_lines_are_found_for_same_named_keys_under_different_parents() -> None:
    text = json.dumps(
        {"Platforms": {"a": LOCAL, "b": {**REMOTE, "local": {"imageDir": "x"}}}}, indent=2
    )
    lines = text.splitlines()
    expected = [n for n, line in enumerate(lines, 1) if '"imageDir": "x"' in line]
    assert problems_of(text) == [
        f"gw.json:{expected[0]} key 'Platforms.b.local.imageDir': "
        'must be an absolute path, not "x"'
    ]


def test_a_list_item_problem_points_at_the_item() -> None:
    text = (
        '{"Platforms": {"c": {\n"accesstype": "local", "local": {"imageDir": "/i"},\n'
        '"admins": [\n"root",\n"-x"\n]}}}'
    )
    assert problems_of(text) == [
        "gw.json:5 key 'Platforms.c.admins[1]': must be a user name, not \"-x\""
    ]


def test_every_problem_is_reported_once_in_file_order_without_pydantic_text() -> None:
    text = json.dumps(
        {
            "WorkerThreads": 0,
            "Authentication": "mock",
            "Platforms": {"c": {"accesstype": "lcal"}},
            "ImageExpirationTimeout": "90 days",
        },
        indent=4,
    )
    lines = problems_of(text)
    assert [re.search(r"key '([^']+)'", line).group(1) for line in lines] == [
        "WorkerThreads",
        "Authentication",
        "Platforms.c.accesstype",
        "ImageExpirationTimeout",
    ]
    for line in lines:
        assert re.match(r"gw\.json:\d+ key '", line), line
        assert "pydantic" not in line and "Input should" not in line and "Value error" not in line


# ---- the rules, one by one ---------------------------------------------------------------

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
    assert error.hint == "every key is described in docs/config-imagemanager.md"


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


# ---- values and helpers ------------------------------------------------------------------


def test_locations_default_to_https_of_their_name_and_restrict_registries() -> None:
    config = config_with(
        DefaultImageLocation="hub",
        Locations={
            "hub": {"url": "https://index.docker.io/"},
            "localhost:5000": {"url": "http://localhost:5000"},
            "quay.io": {"remotetype": "dockerv2", "authentication": "http"},
        },
    )
    assert config.location_for("hub").url == "https://index.docker.io"
    assert config.location_for("localhost:5000").url == "http://localhost:5000"
    assert config.location_for("quay.io").url == "https://quay.io"
    assert config.locations["quay.io"].url == "https://quay.io"
    with pytest.raises(UnknownLocationError) as caught:
        config.location_for("ghcr.io")
    assert str(caught.value) == (
        "gw.json key 'Locations.ghcr.io': registry 'ghcr.io' is not one of the configured Locations"
    )
    assert caught.value.hint == "the gateway may pull from: hub, localhost:5000, quay.io"


def test_without_locations_a_registry_name_must_still_be_a_host_name() -> None:
    with pytest.raises(UnknownLocationError) as caught:
        GatewayConfig.default().location_for("evil.org/x")
    assert str(caught.value) == (
        "key 'Locations.evil.org/x': registry name \"evil.org/x\" must start with a letter or "
        "digit and contain only letters, digits, '.', '_', ':' and '-'"
    )


def test_platforms_local_and_remote() -> None:
    config = config_with(
        Platforms={"a": {**LOCAL, "admins": ["root", "ops"]}, "b": REMOTE},
    )
    local, remote = config.platform("a"), config.platform("b")
    assert (local.image_dir, local.munge_socket_path) == (
        "/images",
        "/var/run/munge/munge.socket.2",
    )
    assert local.is_admin("ops") and not local.is_admin("o")
    assert remote.image_dir == "/images"
    assert remote.host == ("login01",)
    assert remote.ssh is not None and remote.ssh.ssh_cmd_options == ()


def test_an_unknown_platform_is_a_clear_error() -> None:
    config = config_with(Platforms={"a": LOCAL, "b": REMOTE})
    with pytest.raises(UnknownPlatformError) as caught:
        config.platform("c")
    assert str(caught.value) == (
        "gw.json key 'Platforms.c': system 'c' is not one of the configured Platforms"
    )
    assert caught.value.hint == (
        "configured systems: a, b; the name must match 'system' in udiRoot.conf"
    )


@pytest.mark.parametrize(
    ("value", "enabled", "alice", "bob"),
    [
        ("all", True, True, True),
        (["alice"], True, True, False),
        ([], True, False, False),
        ("none", False, False, False),
        ("None", False, False, False),
        (None, False, False, False),
    ],
)
def test_import_users(value: Any, enabled: bool, alice: bool, bob: bool) -> None:
    config = config_with(ImportUsers=value)
    assert (config.import_enabled, config.may_import("alice"), config.may_import("bob")) == (
        enabled,
        alice,
        bob,
    )


def test_converter_options_split_strings_and_keep_lists() -> None:
    config = config_with(
        ConverterOptions={
            "squashfs": "-comp zstd -Xcompression-level '15'",
            "cramfs": ["-N", "big"],
        }
    )
    assert config.converter_options_for("squashfs") == (
        "-comp",
        "zstd",
        "-Xcompression-level",
        "15",
    )
    assert config.converter_options_for("cramfs") == ("-N", "big")
    assert config.converter_options_for("ext4") == ()


def test_original_value_forms_are_accepted() -> None:
    config = config_with(
        WorkerThreads="8",
        PullUpdateTimeout="600",
        LogLevel="WARN",
        ImageExpirationTimeout="1:2:3:4",
    )
    assert config.worker_threads == 8
    assert config.pull_update_timeout == timedelta(seconds=600)
    assert config.log_level == "warning" and config.log_level_number == logging.WARNING
    assert config.image_expiration_timeout == timedelta(days=1, hours=2, minutes=3, seconds=4)


def test_the_config_is_frozen() -> None:
    config = config_with(Platforms={"a": LOCAL}, ConverterOptions={"squashfs": []})
    with pytest.raises(ValueError, match="frozen"):
        config.worker_threads = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.platforms["b"] = config.platforms["a"]  # type: ignore[index]
    with pytest.raises(TypeError):
        config.converter_options["ext4"] = ()  # type: ignore[index]


def test_where_tells_the_line_of_a_value() -> None:
    config = parse_gateway_config(DOCS_LOCAL_SAMPLE, "imagemanager.json")
    assert config.where("Platforms", "mycluster", "local", "imageDir") == "imagemanager.json:22"
    assert config.where("Locations", "registry-1.docker.io") == "imagemanager.json:11"
    assert config.where("WorkerThreads") == "built-in default"


def test_a_dumped_config_loads_back_to_the_same_config() -> None:
    original = load_gateway_config(str(EXAMPLE))
    dumped = json.dumps(original.model_dump(mode="json", by_alias=True))
    assert parse_gateway_config(dumped, "dump.json").model_dump() == original.model_dump()


def test_data_without_text_reports_key_paths_without_lines() -> None:
    with pytest.raises(GatewayConfigError) as caught:
        gateway_config_from_data({"Platforms": {"a": {"accesstype": "x"}}})
    assert (
        str(caught.value) == 'key \'Platforms.a.accesstype\': must be "local" or "remote", not "x"'
    )


# ---- expiration: D:HH:MM:SS --------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**8).map(lambda s: timedelta(seconds=s)))
def test_expiration_round_trips_through_its_canonical_form(duration: timedelta) -> None:
    text = format_expiration(duration)
    assert re.fullmatch(r"\d+:[0-2]\d:[0-5]\d:[0-5]\d", text)
    assert parse_expiration(text) == duration


@given(st.tuples(*[st.integers(min_value=0, max_value=10**4)] * 4))
def test_expiration_accepts_the_originals_unnormalised_fields(fields: tuple[int, ...]) -> None:
    days, hours, minutes, seconds = fields
    parsed = parse_expiration(":".join(map(str, fields)))
    assert parsed.total_seconds() == seconds + 60 * (minutes + 60 * (hours + 24 * days))


@pytest.mark.parametrize(
    "text", ["", "90", "1:2:3", "1:2:3:4:5", "1:-2:3:4", "a:00:00:00", "1.5:0:0:0"]
)
def test_expiration_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"^must be days:hours:minutes:seconds"):
        parse_expiration(text)


# ---- the loader --------------------------------------------------------------------------


def write_config(directory: Path, name: str, data: dict) -> Path:
    path = directory / name
    path.write_text(json.dumps(data))
    path.chmod(0o644)
    return path


def test_loader_prefers_the_argument_then_gwconfig_then_the_default_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argument = write_config(tmp_path, "argument.json", {"WorkerThreads": 3})
    environment = write_config(tmp_path, "environment.json", {"WorkerThreads": 5})
    default = write_config(tmp_path, "default.json", {"WorkerThreads": 7})
    monkeypatch.setattr(gwconfig, "DEFAULT_CONFIG_PATH", str(default))
    env = {"GWCONFIG": str(environment)}

    assert load_gateway_config(str(argument), environ=env).worker_threads == 3
    assert load_gateway_config(None, environ=env).worker_threads == 5
    assert load_gateway_config(None, environ={}).worker_threads == 7
    assert load_gateway_config(None, environ={"GWCONFIG": ""}).worker_threads == 7
    assert load_gateway_config(str(argument), environ=env).source == str(argument)


def test_the_default_path_is_etc_shifter() -> None:
    assert gateway_config_path(None, environ={}) == (
        "/etc/shifter/imagemanager.json",
        "the default location",
    )


def test_a_missing_named_file_is_an_error_saying_who_named_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.json"
    monkeypatch.setattr(gwconfig, "DEFAULT_CONFIG_PATH", str(tmp_path / "absent.json"))
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(None, environ={"GWCONFIG": str(missing)}, missing_ok=True)
    assert str(caught.value) == f"{missing}: does not exist (named by GWCONFIG)"
    with pytest.raises(ConfigError, match=r"does not exist \(named on the command line\)$"):
        load_gateway_config(str(missing), environ={}, missing_ok=True)
    with pytest.raises(ConfigError, match=r"absent.json: does not exist \(the default location\)$"):
        load_gateway_config(None, environ={})
    assert load_gateway_config(None, environ={}, missing_ok=True) == GatewayConfig.default()


def test_a_file_every_user_may_write_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, "gw.json", {})
    path.chmod(0o666)
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(str(path), environ={})
    assert str(caught.value) == (
        f"{path}: is writable by every user, who could then choose the gateway's registries, "
        "image directories and admins"
    )
    assert caught.value.hint == f"chmod o-w {path}"


def test_a_directory_or_non_utf8_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r": is a directory, not a configuration file$"):
        load_gateway_config(str(tmp_path), environ={})
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{\n"LogLevel": "d\xe9bug"}')
    path.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(str(path), environ={})
    assert str(caught.value) == f"{path}:2: is not UTF-8 text"


def test_load_errors_carry_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "gw.json"
    path.write_text('{\n  "Platforms": {\n    "c": {"accesstype": "remote"}\n  }\n}\n')
    path.chmod(0o644)
    with pytest.raises(GatewayConfigError) as caught:
        load_gateway_config(str(path), environ={})
    assert str(caught.value) == (
        f"{path}:3 key 'Platforms.c.host': is required with accesstype \"remote\": "
        "a list of host names"
    )


def test_a_path_that_cannot_be_opened_is_refused_with_the_reason(tmp_path: Path) -> None:
    # A path below a regular file fails for root too, unlike a chmod 000 file.
    path = write_config(tmp_path, "gw.json", {}) / "below"
    with pytest.raises(ConfigError) as caught:
        load_gateway_config(str(path), environ={})
    assert str(caught.value) == f"{path}: cannot be read: Not a directory"


# ---- the example file and the documentation ----------------------------------------------


def test_the_example_loads_and_sets_every_key() -> None:
    config = load_gateway_config(str(EXAMPLE), environ={})
    assert set(config.platforms) == {"mycluster", "othercluster"}
    written = set()

    def walk(value: Any, prefix: str, free: bool) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                name = "<name>" if free else key
                path = f"{prefix}.{name}" if prefix else name
                if not free:
                    written.add(path)
                walk(inner, path, key in ("Locations", "Platforms") and not free)

    walk(json.loads(EXAMPLE.read_text()), "", False)
    written = {path for path in written if not path.startswith("ConverterOptions.")}
    current = {path for path, obsolete in iter_key_paths(GatewayConfig) if not obsolete}
    assert written == current


def documented_keys(section: str) -> set[str]:
    text = DOC.read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", body, re.MULTILINE))


def test_the_documentation_lists_exactly_the_keys_the_model_knows() -> None:
    paths = list(iter_key_paths(GatewayConfig))
    assert documented_keys("Keys") == {path for path, obsolete in paths if not obsolete}
    assert documented_keys("Obsolete keys") == {path for path, obsolete in paths if obsolete}
