"""imagemanager.json: the model, its defaults, values and messages (the rules one by one are in
`test_gateway_config_rules`, the files on disk in `test_gateway_config_files`)."""

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
from shifter.gateway.config import (
    GatewayConfig,
    GatewayConfigError,
    UnknownLocationError,
    UnknownPlatformError,
    gateway_config_from_data,
    load_gateway_config,
    parse_gateway_config,
)
from shifter.gateway.config_values import format_expiration, parse_expiration

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "src" / "shifter" / "data" / "imagemanager.json.example"

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


def test_a_plain_http_location_that_expects_credentials_is_refused_unless_allowed() -> None:
    refused = only_problem(DefaultImageLocation="builds:5000", Locations={
        "builds:5000": {"url": "http://builds:5000", "authentication": "http"}})
    assert str(refused).startswith(
        "gw.json:5 key 'Locations.builds:5000.url': http://builds:5000 is plain http, and "
        "authentication 'http' says this registry takes credentials")
    assert '"allowPlainHttpCredentials": true' in str(refused)
    allowed = config_with(DefaultImageLocation="builds:5000", Locations={"builds:5000": {
        "url": "http://builds:5000", "authentication": "http",
        "allowPlainHttpCredentials": True}})
    assert not allowed.location_for("builds:5000").refuses_credentials
    anonymous = config_with(DefaultImageLocation="builds:5000", Locations={
        "builds:5000": {"url": "http://builds:5000"}})
    assert anonymous.location_for("builds:5000").refuses_credentials


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
