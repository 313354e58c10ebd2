"""udiRoot.conf: every rule, with its message, file, line and key."""

from __future__ import annotations

import os

import pytest

from shifter.data import UDIROOT_EXAMPLE, data_path
from shifter.errors import ConfigError, ParseError
from shifter.runtime.config.load import parse_udiroot_config
from shifter.runtime.volumes.spec import SPEC_HINT
from tests.unit.test_runtime_config import BASE, MODULES, NEXT, SRC, error_of

SEE_DOCS = "see config-udiroot.md of shifter's documentation"

pytestmark = pytest.mark.unit

ABS = "start it with '/'"
DIGITS = "write decimal digits only"
URL = "e.g. imageGateway=http://imagegw:5000"
SIZE_HINT = "write a number with an optional unit b, k, m, g, t, p or e, e.g. 10G"
UNKNOWN = "module keys look like module_<name>_<setting>, e.g. module_mpich_siteFs"
# (line, the message after "u.conf:LINE key 'KEY': ", the hint or None for no hint)
RULES = [
    ("udimount=/x", "unknown key 'udimount'", "did you mean 'udiMount'?"),
    ("siteResource=/x", "unknown key 'siteResource'", "did you mean 'siteResources'?"),
    ("frobnicate=1", "unknown key 'frobnicate'", SEE_DOCS),
    ("udiMount=var/udiMount", "must be an absolute path, got 'var/udiMount'", ABS),
    ("etcPath=/etc/a b", "'/etc/a b' contains whitespace", "paths cannot be quoted"),
    ("allowLocalChroot=yes", "must be 0 or 1 (or true or false), got 'yes'", "write 0 or 1"),
    ("mountUdiRootWritable=2", "must be 0 or 1 (or true or false), got '2'", "write 0 or 1"),
    ("maxGroupCount=-1", "must be a whole number from 0 to 65536, got '-1'", DIGITS),
    ("maxGroupCount=+5", "must be a whole number from 0 to 65536, got '+5'", DIGITS),
    ("maxGroupCount=65537", "must be a whole number from 0 to 65536, got '65537'", DIGITS),
    ("gatewayTimeout=1.5", "must be a whole number from 0 to 86400, got '1.5'", DIGITS),
    ("perNodeCacheSizeLimit=lots", "invalid size 'lots'", SIZE_HINT),
    ("rootfsType=xfs", "must be one of tmpfs, ramfs; got 'xfs'", None),
    ("mountPropagationStyle=shared", "must be one of private, slave; got 'shared'", None),
    ("defaultImageType=Docker", "must be one of docker, custom, id, local; got 'Docker'", None),
    (
        "perNodeCacheAllowedFsType=xfs ext4",
        "perNodeCache filesystem 'ext4' is not supported (xfs)",
        "only xfs is implemented",
    ),
    (
        "system=cori 2",
        "'cori 2' is not a system name (letters, digits, _ . -)",
        "use the platform name this cluster has in the gateway's imagemanager.json",
    ),
    ("siteEnv=SHIFTER_RUNTIME", "'SHIFTER_RUNTIME' is not NAME=VALUE", "e.g. SHIFTER_RUNTIME=1"),
    ("siteEnvAppend=1PATH=/x", "'1PATH=/x' is not NAME=VALUE", "e.g. SHIFTER_RUNTIME=1"),
    ("siteEnvPrepend=PATH=", "'PATH=' has an empty value", "to remove a variable use siteEnvUnset"),
    ("siteEnvUnset=A=1", "'A=1' is not an environment variable name", None),
    ("usersToImport=bad:user", "'bad:user' is not a user name", None),
    ("imageGateway=gw:5000", "'gw:5000' is not an http:// or https:// URL", URL),
    ("imageGateway=ftp://gw", "'ftp://gw' is not an http:// or https:// URL", URL),
    (
        "siteFs=/a:/b:ro,rec",
        "invalid volume '/a:/b:ro,rec': flags are separated by ':', not ',' ('ro,rec')",
        "write ...:ro:rec",
    ),
    (
        "siteFs=/home:home",
        "invalid volume '/home:home': the target path 'home' is not absolute",
        SPEC_HINT,
    ),
    ("defaultModules=mpich", "'mpich' is not a configured module", "configured modules: none"),
    (
        "module_mpich_copypath=/x",
        "unknown key 'module_mpich_copypath'",
        "did you mean 'module_mpich_copyPath'?",
    ),
    (
        "module_mpich_siteenvappend=A=1",
        "unknown key 'module_mpich_siteenvappend'",
        "did you mean 'module_mpich_siteEnvAppend'?",
    ),
    (
        "module_mpich=1",
        "unknown key 'module_mpich'",
        UNKNOWN,
    ),
    (
        "module__siteFs=/a",
        "unknown key 'module__siteFs'",
        UNKNOWN,
    ),
    (
        "module_mpich_copy_path=/x",
        "unknown key 'module_mpich_copy_path'",
        "did you mean 'module_mpich_copyPath'?",
    ),
    ("module_mpich_bogus=/x", "unknown key 'module_mpich_bogus'", SEE_DOCS),
    (
        "module_cray_mpich_siteFs=/a",
        "'cray_mpich' is not a module name (letters, digits, . + -; no '_')",
        None,
    ),
    (
        "module_.hidden_enabled=1",
        "'.hidden' is not a module name (letters, digits, . + -; no '_')",
        None,
    ),
    ("module_None_enabled=1", "'None' is reserved: --module=none means no modules", None),
    ("module_a_enabled=maybe", "must be 0 or 1 (or true or false), got 'maybe'", "write 0 or 1"),
    ("module_a_copyPath=relative", "must be an absolute path, got 'relative'", ABS),
    (
        "module_a_siteFs=/x:/y:bogus",
        "invalid volume '/x:/y:bogus': unknown flag 'bogus'",
        SPEC_HINT,
    ),
    ("module_a_conflict=a", "module 'a' cannot conflict with itself", None),
    ("module_a_conflict=b", "'b' is not a configured module", "configured modules: a"),
    ("module_a_conflict=b b", "module 'b' is listed twice", None),
]


@pytest.mark.parametrize(("line", "message", "hint"), RULES)
def test_rule_messages_name_file_line_and_key(line: str, message: str, hint: str | None) -> None:
    error = error_of(line + "\n")
    assert isinstance(error, ConfigError)
    key = line.partition("=")[0]
    assert str(error) == f"u.conf:{NEXT} key {key!r}: {message}"
    assert (error.source, error.line, error.key) == (SRC, NEXT, key)
    assert error.hint == hint


def test_unknown_module_in_defaults_suggests_a_close_name() -> None:
    error = error_of(MODULES + "defaultModules=mpich,cvfms\n")
    assert (
        str(error) == f"u.conf:{NEXT + 7} key 'defaultModules': 'cvfms' is not a configured module"
    )
    assert error.hint == "did you mean 'cvmfs'?"


def test_conflict_naming_an_unknown_module_suggests_one() -> None:
    error = error_of(MODULES + "module_x_conflict = mpihc\n")
    assert error.hint == "did you mean 'mpich'?"
    assert error.line == NEXT + 7


@pytest.mark.parametrize(
    ("defaults", "message"),
    [
        ("old", "module 'old' is disabled (module_old_enabled=0)"),
        ("mpich,openmpi", "modules 'mpich' and 'openmpi' conflict"),
        ("openmpi,mpich", "modules 'openmpi' and 'mpich' conflict"),
        ("mpich,mpich", "module 'mpich' is listed twice"),
        ("mpich,,cvmfs", "'' is not a module name (letters, digits, . + -; no '_')"),
    ],
)
def test_default_modules_must_be_usable_together(defaults: str, message: str) -> None:
    error = error_of(MODULES + f"defaultModules={defaults}\n")
    assert str(error) == f"u.conf:{NEXT + 7} key 'defaultModules': {message}"


def test_line_without_equals_is_a_parse_error() -> None:
    error = error_of("udiMount /var/udiMount\n")
    assert isinstance(error, ParseError)
    assert str(error) == f"u.conf:{NEXT}: expected 'key=value', got 'udiMount /var/udiMount'"


def test_required_keys_are_listed_together() -> None:
    error = error_of("", base="loopMount=/l\npopulateEtcDynamically=1\n")
    assert str(error) == "u.conf: required keys not set: udiMount, imagePath, rootfsType"
    assert error.hint == f"see {data_path(UDIROOT_EXAMPLE)} for recommended values"
    assert os.path.isfile(data_path(UDIROOT_EXAMPLE))
    error = error_of("udiMount=\n")
    assert str(error) == "u.conf: required key not set: udiMount"


def test_etc_path_is_required_unless_etc_is_populated_dynamically() -> None:
    base = BASE.replace("populateEtcDynamically=1\n", "")
    error = error_of("", base=base)
    assert str(error) == "u.conf: etcPath is not set, and populateEtcDynamically is 0"
    assert parse_udiroot_config(base + "etcPath=/etc/shifter\n", SRC).etc_path == "/etc/shifter"
