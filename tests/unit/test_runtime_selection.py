"""Which image, volumes and modules a launch uses: command line, then the environment."""

from __future__ import annotations

import pytest

from shifter.errors import ImageReferenceError, ShifterError
from shifter.image.descriptor import ImageType
from shifter.runtime.request.selection import choose_image, choose_modules, choose_volumes

pytestmark = pytest.mark.unit

A, B, C = "a" * 64, "b" * 64, "c" * 64


def test_image_option_wins_over_everything() -> None:
    environ = {"SHIFTER": f"id:{A}", "SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": B}
    choice = choose_image(f"id:{C}", environ, "docker")
    assert (choice.descriptor.spec, choice.origin, choice.request) == (C, "--image", f"id:{C}")


def test_shifter_variable_beats_the_pairs() -> None:
    environ = {"SHIFTER": f"id:{A}", "SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": B}
    choice = choose_image(None, environ, "docker")
    assert (choice.descriptor.spec, choice.origin, choice.request) == (A, "SHIFTER", f"id:{A}")


def test_shifter_pair_beats_the_batch_system_pair() -> None:
    environ = {
        "SHIFTER_IMAGETYPE": "id",
        "SHIFTER_IMAGE": A,
        "SLURM_SPANK_SHIFTER_IMAGETYPE": "id",
        "SLURM_SPANK_SHIFTER_IMAGE": B,
        "SHIFTER_IMAGEREQUEST": "docker:ubuntu",
    }
    choice = choose_image(None, environ, "docker")
    assert choice.descriptor.spec == A
    assert choice.origin == "SHIFTER_IMAGETYPE/SHIFTER_IMAGE"
    assert choice.request == "docker:ubuntu"  # the inherited request is passed on


def test_a_half_pair_is_ignored() -> None:
    environ = {"SHIFTER_IMAGE": A, "SLURM_SPANK_SHIFTER_IMAGETYPE": "id"}
    with pytest.raises(ShifterError, match="no image specified"):
        choose_image(None, environ, "docker")
    environ["SLURM_SPANK_SHIFTER_IMAGE"] = B
    assert choose_image(None, environ, "docker").descriptor.spec == B


def test_empty_values_count_as_unset() -> None:
    environ = {"SHIFTER": "", "SHIFTER_IMAGETYPE": "id", "SHIFTER_IMAGE": ""}
    with pytest.raises(ShifterError):
        choose_image(None, environ, "docker")


def test_the_request_variable_is_the_last_resort() -> None:
    choice = choose_image(None, {"SLURM_SPANK_SHIFTER_IMAGEREQUEST": "ubuntu:22.04"}, "docker")
    assert choice.descriptor.type is ImageType.DOCKER
    assert choice.descriptor.spec == "ubuntu:22.04"
    assert choice.origin == "SLURM_SPANK_SHIFTER_IMAGEREQUEST"


def test_default_type_applies_to_the_option_and_shifter_but_not_the_pairs() -> None:
    assert choose_image("ubuntu", {}, "docker").descriptor.type is ImageType.DOCKER
    with pytest.raises(ImageReferenceError, match="SHIFTER_IMAGETYPE/SHIFTER_IMAGE"):
        choose_image(None, {"SHIFTER_IMAGETYPE": "nope", "SHIFTER_IMAGE": "x"}, "docker")


def test_errors_name_where_the_text_came_from() -> None:
    with pytest.raises(ImageReferenceError, match=r"^SHIFTER: invalid image id"):
        choose_image(None, {"SHIFTER": "id:xyz"}, "docker")


def test_volumes_from_the_command_line_replace_the_environment() -> None:
    environ = {"SHIFTER_VOLUME": "/a:/b", "SLURM_SPANK_SHIFTER_VOLUME": "/c:/d"}
    assert choose_volumes([], environ) == ("/a:/b", "SHIFTER_VOLUME")
    assert choose_volumes(["/e:/f", "/g:/h"], environ) == ("/e:/f;/g:/h", "--volume")
    assert choose_volumes([], {"SLURM_SPANK_SHIFTER_VOLUME": "/c:/d"})[0] == "/c:/d"
    assert choose_volumes([], {}) == ("", "")


def test_modules_selection_sources() -> None:
    assert choose_modules("a,b", {"SHIFTER_MODULE": "c"}) == ("a,b", "--module")
    assert choose_modules(None, {"SHIFTER_MODULE": "c"}) == ("c", "SHIFTER_MODULE")
    assert choose_modules(None, {}) == (None, "defaultModules")
