"""The container environment (spec 1.18): order, append/prepend/unset, --env and env-file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shifter.errors import ParseError
from shifter.runtime.config.load import parse_udiroot_config
from shifter.runtime.site.environment import (
    UNSECURE_VARIABLES,
    build_environment,
    caller_environment,
    exec_environment,
    host_environment,
    parse_env_file,
    parse_env_option,
)
from shifter.runtime.site.modules import select_modules

pytestmark = pytest.mark.unit

BASE = "udiMount=/u\nloopMount=/l\nimagePath=/i\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"


def _config(text: str = ""):  # type: ignore[no-untyped-def]
    return parse_udiroot_config(BASE + text, "u.conf")


def test_the_originals_append_and_prepend_example() -> None:
    config = _config("siteEnvAppend=PATH=/opt/udiImage/bin\nsiteEnvPrepend=PATH=/sbin\n")
    env = build_environment(
        {"PATH": "/incorrect"}, request=None, image_id="x", image_env=["PATH=/usr/bin"],
        config=config,
    )  # fmt: skip
    assert env["PATH"] == "/sbin:/usr/bin:/opt/udiImage/bin"


def test_layers_in_order() -> None:
    config = _config("siteEnv=A=site\nsiteEnvUnset=GONE\n")
    env = build_environment(
        {"A": "host", "B": "host", "C": "host", "D": "host", "GONE": "host"},
        request="docker:ubuntu",
        image_id="abc",
        image_env=["B=image", "C=image", "D=image"],
        env_file=[("C", "file"), ("D", "file")],
        env_options=[("D", "option")],
        config=config,
    )
    assert env == {
        "A": "site",
        "B": "image",
        "C": "file",
        "D": "option",
        "SHIFTER_IMAGEREQUEST": "docker:ubuntu",
        "SHIFTER_IMAGE": "abc",
    }


def test_no_request_no_request_variable() -> None:
    env = build_environment({}, request=None, image_id="abc", image_env=[])
    assert env == {"SHIFTER_IMAGE": "abc"}


def test_malformed_image_entries_are_skipped() -> None:
    env = build_environment(
        {}, request=None, image_id="x", image_env=["NOEQ", "EMPTY=", "=v", "OK=1"]
    )
    assert env == {"SHIFTER_IMAGE": "x", "OK": "1"}


def test_modules_apply_before_the_global_site_environment() -> None:
    config = _config(
        "module_a_siteEnv=V=module X=module\nmodule_a_siteEnvAppend=P=/a\n"
        "module_b_siteEnvPrepend=P=/b\nmodule_b_siteEnvUnset=X\n"
        "siteEnv=V=global\nsiteEnvAppend=P=/g\n"
    )
    modules = select_modules(config, "a,b")
    env = build_environment({"P": "/host"}, request=None, image_id="i", image_env=[],
                            modules=modules, config=config)  # fmt: skip
    assert env["V"] == "global"
    assert env["P"] == "/b:/host:/a:/g"
    assert "X" not in env


def test_append_and_prepend_to_an_empty_variable_set_it() -> None:
    config = _config("siteEnvAppend=E=/x\nsiteEnvPrepend=F=/y\n")
    env = build_environment({"E": ""}, request=None, image_id="i", image_env=[], config=config)
    assert (env["E"], env["F"]) == ("/x", "/y")


def test_names_match_exactly() -> None:
    config = _config("siteEnvUnset=PATH\n")
    env = build_environment({"PATH_2": "a", "PA": "b", "PATH": "c"}, request=None,
                            image_id="i", image_env=[], config=config)  # fmt: skip
    assert env["PATH_2"] == "a" and env["PA"] == "b" and "PATH" not in env


def test_host_environment_drops_what_glibc_hides_from_setuid_programs() -> None:
    host = {"LD_PRELOAD": "x", "LD_LIBRARY_PATH": "y", "TMPDIR": "/t", "HOME": "/h"}
    assert host_environment(host) == {"HOME": "/h"}
    assert {"LD_PRELOAD", "LD_AUDIT", "GCONV_PATH", "TMPDIR"} <= UNSECURE_VARIABLES


@pytest.mark.parametrize("text", ["NAME", "NAME=", "=value", "1BAD=x", "A B=c"])
def test_env_option_rejects(text: str) -> None:
    with pytest.raises(ParseError, match="improperly formatted environment variable"):
        parse_env_option(text)


def test_env_option_keeps_everything_after_the_first_equals() -> None:
    assert parse_env_option("A=b=c:d") == ("A", "b=c:d")


def test_env_file_format() -> None:
    text = "# comment\n\n  A=1  \nB='quoted'\n\t# indented comment\nC=x=y\n"
    assert parse_env_file(text, "f.env") == (("A", "1"), ("B", "'quoted'"), ("C", "x=y"))


def test_env_file_errors_name_file_and_line() -> None:
    with pytest.raises(ParseError) as caught:
        parse_env_file("A=1\nB=\n", "f.env")
    assert str(caught.value).startswith("f.env:2: invalid env-file entry 'B='")


def test_exec_environment_is_read_as_os_environ_reads_it() -> None:
    assert exec_environment(b"A=1\0NOEQUALS\0B=x=y\0A=2\0EMPTY=\0BYTES=\xff\0") == {
        "A": "1",  # the first of repeated names, as os.environ
        "B": "x=y",
        "EMPTY": "",
        "BYTES": os.fsdecode(b"\xff"),  # exec encodes it back to the same byte
    }


@pytest.mark.parametrize(
    ("current", "given", "expected"),
    [
        # coerced: LC_CTYPE unset by the caller, or set to C or POSIX
        ({"A": "1", "LC_CTYPE": "C.UTF-8"}, b"A=1\0", {"A": "1"}),
        ({"LC_CTYPE": "C.UTF-8"}, b"LC_CTYPE=POSIX\0", {"LC_CTYPE": "POSIX"}),
        ({"LC_CTYPE": "UTF-8"}, b"LC_CTYPE=xx_XX\0", {"LC_CTYPE": "xx_XX"}),
        # not coerced: the caller's own C.UTF-8, another value, none
        ({"LC_CTYPE": "C.UTF-8"}, b"LC_CTYPE=C.UTF-8\0", {"LC_CTYPE": "C.UTF-8"}),
        ({"LC_CTYPE": "de_DE.UTF-8"}, b"", {"LC_CTYPE": "de_DE.UTF-8"}),
        # changes made in this process since its exec are kept
        ({"NEW": "x"}, b"OLD=y\0", {"NEW": "x"}),
    ],
)
def test_caller_environment_undoes_only_the_locale_coercion(
    tmp_path: Path, current: dict[str, str], given: bytes, expected: dict[str, str]
) -> None:
    environ = tmp_path / "environ"
    environ.write_bytes(given)
    assert caller_environment(current, str(environ)) == expected


def test_caller_environment_without_proc_keeps_what_it_has(tmp_path: Path) -> None:
    current = {"LC_CTYPE": "C.UTF-8"}
    assert caller_environment(current, str(tmp_path / "missing")) == current
