"""udiRoot.conf: the typed model, its values, the example file and the documentation (every
rule and its message: `test_runtime_config_rules`; the loader's file checks:
`test_runtime_config_loader`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shifter.errors import ConfigError, LocatedError
from shifter.frozen import field_names
from shifter.runtime.config.keys import GLOBAL_KEYS, MODULE_KEYS
from shifter.runtime.config.load import (
    EnvEntry,
    ModuleConfig,
    Origin,
    UdiRootConfig,
    documented_keys,
    parse_udiroot_config,
)
from shifter.runtime.volumes.spec import PerNodeCache, VolumeSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "src" / "shifter" / "data" / "udiRoot.conf.example"
DOCS = ROOT / "docs" / "config-udiroot.md"
SRC = "u.conf"
BASE = (
    "udiMount=/var/udiMount\n"
    "loopMount=/var/udiLoopMount\n"
    "imagePath=/images\n"
    "rootfsType=tmpfs\n"
    "populateEtcDynamically=1\n"
)
NEXT = BASE.count("\n") + 1  # the line number of the first line a test appends


def parse(extra: str = "") -> UdiRootConfig:
    return parse_udiroot_config(BASE + extra, SRC)


def error_of(extra: str, base: str = BASE) -> LocatedError:
    with pytest.raises(LocatedError) as caught:
        parse_udiroot_config(base + extra, SRC)
    return caught.value


# --- the model ------------------------------------------------------------------------------


def test_minimal_file_gives_the_documented_defaults() -> None:
    config = parse()
    assert (config.udi_mount, config.loop_mount, config.image_path) == (
        "/var/udiMount",
        "/var/udiLoopMount",
        "/images",
    )
    assert config.rootfs_type == "tmpfs"
    assert config.max_group_count == 31
    assert config.gateway_timeout == 60
    assert config.default_image_type == "docker"
    assert config.mount_propagation_style == "private"
    assert config.mount_udi_root_writable is False
    assert config.per_node_cache_allowed_fs_types == ("xfs",)
    assert config.per_node_cache_size_limit is None
    assert config.mkfs_xfs_path == "/sbin/mkfs.xfs"
    assert (config.modules, config.default_modules, config.site_fs) == ((), (), ())
    assert config.warnings == ()
    assert config.origin("udiMount") == Origin(SRC, 1)
    assert config.origin("system") == Origin(SRC, None)
    assert str(config.origin("system")) == "u.conf (default)"


def test_every_key_has_a_model_field_and_every_field_a_key() -> None:
    model = set(field_names(UdiRootConfig)) - {"source", "modules", "origins", "warnings"}
    assert {spec.field for spec in GLOBAL_KEYS} == model
    module_fields = set(field_names(ModuleConfig)) - {"name", "origin", "origins"}
    assert {spec.field for spec in MODULE_KEYS} == module_fields


def test_the_ci_config_of_the_original_parses() -> None:
    text = (
        "udiMount=/var/udiMount\nloopMount=/var/udiLoopMount\nimagePath=/images\n"
        "udiRootPath=/usr\nmountUdiRootWritable=1\nmaxGroupCount=31\nrootfsType=tmpfs\n"
        "siteFs=/home:/home\nsiteEnv=SHIFTER_RUNTIME=1\nsiteEnvAppend=PATH=/opt/udiImage/bin\n"
        "defaultImageType=docker\npopulateEtcDynamically=1\nallowLibcPwdCalls=1\n"
    )
    config = parse_udiroot_config(text, SRC)
    assert config.udi_root_path == "/usr"
    assert config.mount_udi_root_writable is True
    assert [v.spec for v in config.site_fs] == [VolumeSpec("/home", "/home")]
    assert config.site_env == (EnvEntry("SHIFTER_RUNTIME", "1", Origin(SRC, 9)),)
    assert [str(e) for e in config.site_env_append] == ["PATH=/opt/udiImage/bin"]


def test_site_fs_continuation_and_repeats_append_with_their_lines() -> None:
    config = parse(
        "siteFs=/home:/home;\\\n"
        "       /var/opt/cray/dws:/var/opt/cray/dws:rec:slave\n"
        "siteFs=/global\n"
    )
    assert [(v.spec.source, v.spec.target, v.origin.line) for v in config.site_fs] == [
        ("/home", "/home", NEXT),
        ("/var/opt/cray/dws", "/var/opt/cray/dws", NEXT),
        ("/global", "/global", NEXT + 2),
    ]
    assert config.site_fs[1].spec.flags == ("rec", "slave")
    assert config.origin("siteFs") == Origin(SRC, NEXT)


@pytest.mark.parametrize(
    ("key", "field"),
    [
        ("siteEnv", "site_env"),
        ("siteEnvAppend", "site_env_append"),
        ("siteEnvPrepend", "site_env_prepend"),
    ],
)
def test_env_lists_append_across_lines(key: str, field: str) -> None:
    config = parse(f"{key}=A=1 B=x=y\n{key}=C=/a:/b\n")
    assert [(e.name, e.value, e.origin.line) for e in getattr(config, field)] == [
        ("A", "1", NEXT),
        ("B", "x=y", NEXT),
        ("C", "/a:/b", NEXT + 1),
    ]


def test_name_lists_append() -> None:
    config = parse(
        "siteEnvUnset=LOADEDMODULES _LMFILES_\nsiteEnvUnset=X\n"
        "usersToImport=alice\nusersToImport=bob svc$\n"
        "imageGateway=http://gw1:5000/ https://gw2\nimageGateway=http://gw3:5000\n"
        "perNodeCacheAllowedFsType=xfs\n"
    )
    assert config.site_env_unset == ("LOADEDMODULES", "_LMFILES_", "X")
    assert config.users_to_import == ("alice", "bob", "svc$")
    assert config.image_gateways == ("http://gw1:5000", "https://gw2", "http://gw3:5000")
    assert config.per_node_cache_allowed_fs_types == ("xfs",)


def test_scalars_last_wins_with_a_warning() -> None:
    config = parse("udiMount=/other\n")
    assert config.udi_mount == "/other"
    assert config.origin("udiMount") == Origin(SRC, NEXT)
    assert config.warnings == (
        f"u.conf:{NEXT}: udiMount is set again; this replaces the value from line 1",
    )


def test_empty_value_means_the_default() -> None:
    config = parse("maxGroupCount=5\nmaxGroupCount=\nnodeContextPrefix=\nsiteEnv=\n")
    assert config.max_group_count == 31
    assert "maxGroupCount" not in config.origins
    assert (config.node_context_prefix, config.site_env) == (None, ())


@pytest.mark.parametrize(
    ("value", "expected"), [("0", False), ("1", True), ("true", True), ("FALSE", False)]
)
def test_booleans(value: str, expected: bool) -> None:
    assert parse(f"allowLocalChroot={value}\n").allow_local_chroot is expected


def test_values_of_every_kind() -> None:
    config = parse(
        "maxGroupCount=0\ngatewayTimeout=0\nperNodeCacheSizeLimit=100G\n"
        "mountPropagationStyle=slave\nrootfsType=ramfs\ndefaultImageType=local\n"
        "siteResources=/opt/shifter/site-resources/\nsystem=cori-2.x\nbatchType=slurm\n"
        "etcPath=//etc//shifter/\nautoLoadKernelModule=1\n"
    )
    assert (config.max_group_count, config.gateway_timeout) == (0, 0)
    assert config.per_node_cache_size_limit == 100 * 1024**3
    assert (config.mount_propagation_style, config.rootfs_type) == ("slave", "ramfs")
    assert config.default_image_type == "local"
    assert config.site_resources == "/opt/shifter/site-resources"
    assert (config.system, config.batch_type) == ("cori-2.x", "slurm")
    assert config.etc_path == "/etc/shifter"
    assert config.auto_load_kernel_module is True


def test_deprecated_keys_load_with_a_warning() -> None:
    config = parse("kmodBasePath=/lib/modules\noptionalSshdAsRoot=1\nkmodCacheFile=\n")
    assert config.kmod_base_path == "/lib/modules"
    assert config.warnings == tuple(
        f"u.conf:{NEXT + i}: {key} is deprecated and has no effect; remove it"
        for i, key in enumerate(["kmodBasePath", "optionalSshdAsRoot", "kmodCacheFile"])
    )


# --- modules --------------------------------------------------------------------------------

MODULES = (
    "module_mpich_copyPath = /usr/lib/shifter/modules/mpich\n"
    "module_mpich_siteEnvPrepend = LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64\n"
    "module_openmpi_conflict = mpich\n"
    "module_cvmfs_siteFs = /cvmfs_nfs:/cvmfs\n"
    "module_mpich_siteEnv = SHIFTER_MODULE_MPICH=1\n"
    "module_old_enabled = 0\n"
    "module_mpich_userhook = /opt/udiImage/modules/mpich/bin/init.sh\n"
)


def test_modules_in_file_order_with_their_settings() -> None:
    config = parse(MODULES + "defaultModules = mpich , cvmfs\n")
    assert [m.name for m in config.modules] == ["mpich", "openmpi", "cvmfs", "old"]
    mpich = config.module("mpich")
    assert mpich is not None
    assert mpich.copy_path == "/usr/lib/shifter/modules/mpich"
    assert [str(e) for e in mpich.site_env_prepend] == [
        "LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64"
    ]
    assert mpich.userhook == "/opt/udiImage/modules/mpich/bin/init.sh"
    assert (mpich.enabled, mpich.origin) == (True, Origin(SRC, NEXT))
    assert config.module("openmpi").conflicts == ("mpich",)  # type: ignore[union-attr]
    assert config.module("old").enabled is False  # type: ignore[union-attr]
    assert config.module("MPICH") is None
    assert config.default_modules == ("mpich", "cvmfs")
    error = mpich.error("userhook", "not found in the container", hint="check copyPath")
    assert str(error) == (
        f"u.conf:{NEXT + 6} key 'module_mpich_userhook': not found in the container"
    )
    cvmfs_volume = config.module("cvmfs").site_fs[0]  # type: ignore[union-attr]
    assert (cvmfs_volume.spec, cvmfs_volume.origin.line) == (
        VolumeSpec("/cvmfs_nfs", "/cvmfs"),
        NEXT + 3,
    )


def test_default_modules_none_means_no_modules() -> None:
    assert parse(MODULES + "defaultModules=None\n").default_modules == ()


# --- values checked where they are used -----------------------------------------------------


def test_system_and_gateways_are_required_only_when_asked_for() -> None:
    config = parse()
    with pytest.raises(ConfigError) as caught:
        config.require_system()
    assert str(caught.value) == "system is not set in u.conf"
    assert caught.value.hint == "add a 'system=...' line to u.conf"
    with pytest.raises(ConfigError, match=r"^imageGateway is not set in u.conf$"):
        config.require_image_gateways()
    with pytest.raises(ConfigError, match=r"^perNodeCachePath is not set in u.conf$"):
        config.require("perNodeCachePath")
    configured = parse("system=cori\nimageGateway=http://gw:5000\nudiRootPath=/opt/shifter\n")
    assert configured.require_system() == "cori"
    assert configured.require_image_gateways() == ("http://gw:5000",)
    assert configured.require("udiRootPath") == "/opt/shifter"
    with pytest.raises(ValueError, match=r"unknown udiRoot\.conf key"):
        config.require("nope")


def test_error_points_at_the_line_of_a_key() -> None:
    config = parse("siteFs=/a:/b\n")
    error = config.error("siteFs", "source is not a directory", hint="create it")
    assert str(error) == f"u.conf:{NEXT} key 'siteFs': source is not a directory"
    assert str(config.error("system", "is not known to the gateway")) == (
        "u.conf key 'system': is not known to the gateway"
    )


def test_tool_path_checks_existence_and_the_execute_bit(tmp_path: Path) -> None:
    tool = tmp_path / "mkfs.xfs"
    config = parse(f"mkfsXfsPath={tool}\nddPath={tmp_path}\n")
    with pytest.raises(ConfigError) as caught:
        config.tool_path("mkfsXfsPath")
    assert str(caught.value) == (
        f"u.conf:{NEXT} key 'mkfsXfsPath': mkfsXfsPath={tool} does not exist "
        "(No such file or directory)"
    )
    assert caught.value.hint == "install the tool or set mkfsXfsPath in u.conf to its absolute path"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o644)
    with pytest.raises(ConfigError, match=rf"mkfsXfsPath={tool} is not executable$"):
        config.tool_path("mkfsXfsPath")
    tool.chmod(0o755)
    assert config.tool_path("mkfsXfsPath") == str(tool)
    with pytest.raises(ConfigError, match=rf"u.conf:{NEXT + 1} key 'ddPath': .* regular file"):
        config.tool_path("ddPath")
    with pytest.raises(ValueError, match="not a tool path key"):
        config.tool_path("udiMount")


def test_tool_path_says_when_the_default_was_used() -> None:
    config = parse_udiroot_config(BASE + "cpPath=\n", SRC)
    missing = UdiRootConfig(**{**_as_kwargs(config), "cp_path": "/nonexistent/cp"})
    with pytest.raises(ConfigError) as caught:
        missing.tool_path("cpPath")
    assert str(caught.value).startswith(
        "u.conf key 'cpPath': cpPath=/nonexistent/cp (the default) does not exist"
    )


def _as_kwargs(config: UdiRootConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in field_names(config)}


# --- the example file and the documentation -------------------------------------------------


def _keys_in(lines: list[str], pattern: str) -> set[str]:
    found = set()
    for line in lines:
        match = re.match(pattern, line)
        if match:
            found.add(re.sub(r"^module_[^_]+_", "module_<name>_", match.group(1)))
    return found


def test_example_config_parses() -> None:
    config = parse_udiroot_config(EXAMPLE.read_text(), str(EXAMPLE))
    assert config.warnings == ()
    assert [v.spec.target for v in config.site_fs] == ["/home", "/var/spool/slurmd"]
    assert [m.name for m in config.modules] == ["mpich"]


def test_example_with_every_default_uncommented_still_parses() -> None:
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        if re.match(r"#(defaultModules)=", line):
            continue
        lines.append(re.sub(r"^#(\w+=)", r"\1", line))
    config = parse_udiroot_config("\n".join(lines), str(EXAMPLE))
    assert config.per_node_cache_allowed_fs_types == ("xfs",)
    assert config.gateway_timeout == 60


def test_example_docs_and_model_list_the_same_keys() -> None:
    example = _keys_in(EXAMPLE.read_text().splitlines(), r"#?([A-Za-z][A-Za-z0-9_.+-]*)=")
    docs = _keys_in(DOCS.read_text().splitlines(), r"\| `([A-Za-z0-9<>_]+)` \|")
    assert example == documented_keys()
    assert docs == documented_keys()
    assert len(documented_keys()) == len(GLOBAL_KEYS) + len(MODULE_KEYS)


def test_doc_states_each_default_the_model_uses() -> None:
    text = DOCS.read_text()
    defaults = UdiRootConfig(
        source=SRC, udi_mount="/u", loop_mount="/l", image_path="/i", rootfs_type="tmpfs"
    )
    for spec in GLOBAL_KEYS:
        value = getattr(defaults, spec.field)
        if isinstance(value, bool):
            expected = f"`{int(value)}`"
        elif isinstance(value, int | str) and not spec.required:
            expected = f"`{value}`"
        else:
            continue
        row = next(line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |"))
        assert expected in row, (spec.name, expected)


def test_per_node_cache_spec_in_site_fs() -> None:
    config = parse("siteFs=/tmp/c:/cache:perNodeCache=size=1G\n")
    assert config.site_fs[0].spec.per_node_cache == PerNodeCache(size=1024**3)
