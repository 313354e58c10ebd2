"""`shifter.frozen.Frozen`: what the launch path's models keep from frozen dataclasses."""

from __future__ import annotations

import copy
import pickle
from types import MappingProxyType

import pytest

from shifter.frozen import Frozen, field_names
from shifter.image.reference import DockerReference
from shifter.runtime.config.values import Origin

pytestmark = pytest.mark.unit


class Point(Frozen):
    x: int
    y: int = 0


class Labelled(Frozen, kw_only=True, uncompared=("notes",)):
    name: str
    size: int = 1
    notes: MappingProxyType[str, str] = MappingProxyType({})


def test_fields_are_taken_positionally_or_by_keyword_with_defaults() -> None:
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    assert Point(3).y == 0
    assert field_names(Point) == ("x", "y") == field_names(Point(1))
    assert Point.__match_args__ == ("x", "y")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "Point() missing required argument 'x'"),
        ((1, 2, 3), {}, "Point() takes 2 positional arguments but 3 were given"),
        ((1,), {"x": 2}, "Point() got multiple values for 'x'"),
        ((1,), {"z": 2}, "Point() got an unexpected argument 'z'"),
    ],
)
def test_wrong_arguments_raise_type_error(
    args: tuple[int, ...], kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(TypeError) as caught:
        Point(*args, **kwargs)
    assert str(caught.value) == message


def test_keyword_only_classes_refuse_positional_arguments() -> None:
    with pytest.raises(TypeError, match="takes 0 positional arguments"):
        Labelled("a")  # type: ignore[misc]
    assert Labelled(name="a").size == 1
    assert Labelled.__match_args__ == ()


def test_instances_cannot_change() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match="cannot assign to field 'x'"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot assign"):
        point.z = 2  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="cannot delete field 'y'"):
        del point.y  # type: ignore[misc]
    assert point == Point(1, 0)


def test_equality_and_hash_need_the_same_class_and_skip_uncompared_fields() -> None:
    class Other(Frozen):
        x: int
        y: int = 0

    assert Point(1) != Other(1)
    assert Point(1) != (1, 0)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert len({Point(1, 2), Point(1, 2), Point(2, 1)}) == 2
    first = Labelled(name="a", notes=MappingProxyType({"k": "1"}))
    second = Labelled(name="a", notes=MappingProxyType({"k": "2"}))
    assert first == second and hash(first) == hash(second)
    assert Labelled(name="a") != Labelled(name="a", size=2)


def test_repr_lists_every_field_like_a_dataclass() -> None:
    assert repr(Point(1, 2)) == "Point(x=1, y=2)"
    assert repr(Origin("u.conf", 3)) == "Origin(source='u.conf', line=3)"
    assert repr(Labelled(name="a")) == "Labelled(name='a', size=1, notes=mappingproxy({}))"


def test_pickle_and_copy_give_equal_values() -> None:
    reference = DockerReference("registry-1.docker.io", "library/ubuntu", "22.04", None)
    assert pickle.loads(pickle.dumps(reference)) == reference
    assert copy.copy(reference) == reference
    assert copy.deepcopy(reference) == reference


def test_post_init_runs_after_the_fields_are_set() -> None:
    with pytest.raises(ValueError, match="needs a tag, a digest or both"):
        DockerReference("registry-1.docker.io", "library/ubuntu", None, None)


def test_a_mutable_default_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(ValueError, match="a mutable default would be shared"):

        class Bad(Frozen):
            items: list[int] = []  # noqa: RUF012


def test_uncompared_must_name_fields() -> None:
    with pytest.raises(TypeError, match="uncompared names no field"):

        class Bad(Frozen, uncompared=("missing",)):
            x: int


def test_a_subclass_adds_its_fields_after_its_bases() -> None:
    class Point3(Point):
        z: int = 0

    assert field_names(Point3) == ("x", "y", "z")
    assert Point3(1, 2, 3).z == 3
    assert Point3(1) != Point(1)
