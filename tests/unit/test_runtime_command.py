"""The argv and the working directory of the container's command (spec 1.7)."""

from __future__ import annotations

import pytest

from shifter.errors import ShifterError
from shifter.runtime.request.command import container_argv, plan_workdir

pytestmark = pytest.mark.unit

ENTRY, CMD = ("echo", "howdy"), ("guys",)


def test_command_line_is_the_argv() -> None:
    assert container_argv(["ls", "-l"], None, ENTRY, CMD) == ("ls", "-l")


def test_no_command_runs_the_image_entrypoint_and_cmd() -> None:
    # Decision (docs/runtime.md): as `docker run`; the original always ran /bin/sh.
    assert container_argv([], None, ENTRY, CMD) == ("echo", "howdy", "guys")
    assert container_argv([], None, None, CMD) == ("guys",)
    assert container_argv([], None, ENTRY, None) == ("echo", "howdy")
    assert container_argv([], None, None, None) == ("/bin/sh",)


def test_bare_entrypoint_uses_the_image_entry_with_args_or_cmd() -> None:
    assert container_argv([], "", ENTRY, CMD) == ("echo", "howdy", "guys")
    assert container_argv(["you"], "", ENTRY, CMD) == ("echo", "howdy", "you")
    assert container_argv([], "", ENTRY, None) == ("echo", "howdy")


def test_bare_entrypoint_without_an_image_entry() -> None:
    with pytest.raises(ShifterError, match="does not have a defined entrypoint"):
        container_argv(["x"], "", None, CMD)


def test_entrypoint_value_is_one_word_and_never_gets_cmd() -> None:
    assert container_argv([], "/bin/my prog", ENTRY, CMD) == ("/bin/my prog",)
    assert container_argv(["a", "b"], "/bin/x", ENTRY, CMD) == ("/bin/x", "a", "b")


def test_workdir_default_tries_cwd_then_image_then_root() -> None:
    plan = plan_workdir(None, "/home/u", "/srv")
    assert (plan.candidates, plan.strict) == (("/home/u", "/srv", "/"), False)
    assert plan_workdir(None, None, None).candidates == ("/",)


def test_explicit_workdir_is_strict() -> None:
    plan = plan_workdir("/data", "/home/u", "/srv")
    assert (plan.candidates, plan.strict) == (("/data",), True)
    assert plan_workdir("relative", None, None).candidates == ("/relative",)


def test_bare_workdir_means_the_image_workdir() -> None:
    plan = plan_workdir("", "/home/u", "/srv")
    assert (plan.candidates, plan.strict) == (("/srv",), True)
    with pytest.raises(ShifterError, match="no workdir specified") as caught:
        plan_workdir("", "/home/u", None)
    assert caught.value.hint is not None and "attached" in caught.value.hint
