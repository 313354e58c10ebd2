"""imagemanager.json on disk: the loader's choice of file and its checks, the example file and
the documentation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shifter.errors import ConfigError
from shifter.gateway import config as gwconfig
from shifter.gateway.config import (
    GatewayConfig,
    GatewayConfigError,
    gateway_config_path,
    load_gateway_config,
)
from shifter.gateway.config_source import iter_key_paths
from tests.unit.test_gateway_config import EXAMPLE, ROOT

pytestmark = pytest.mark.unit

DOC = ROOT / "docs" / "config-imagemanager.md"


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
