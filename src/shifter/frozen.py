"""Small immutable value classes without `dataclasses`, for modules on the launch path.

`shifter` imports its configuration, volume and image models on every launch. Importing
`dataclasses` costs that path about 10 ms (it imports `inspect`, which imports `ast`, `dis`,
`tokenize` and more), and each `@dataclass` up to a millisecond more, because it writes and
compiles the source of its methods. `Frozen` does what those models need from a frozen dataclass for
the price of an ordinary class:

    class Origin(Frozen):
        source: str
        line: int | None = None

- the fields are the class's own annotations, in order (after those of a `Frozen` base);
  a class attribute of the same name is the default;
- `__init__` takes the fields positionally or by keyword, or only by keyword with
  `class X(Frozen, kw_only=True)`; a `__post_init__` method, if defined, runs last;
- an instance cannot change: setting or deleting any attribute raises `AttributeError`;
- `==` is true for two instances of the same class with equal fields, and `hash` hashes the
  fields; `class X(Frozen, uncompared=("origins",))` leaves fields out of both (a dataclass
  field's `compare=False`);
- `repr` shows every field, as a dataclass's does.

Defaults are shared by every instance, so they must be immutable (a tuple, a MappingProxyType).
Unlike a dataclass, an assignment raises plain `AttributeError` (`FrozenInstanceError` is a
subclass of it) and `dataclasses.fields` does not apply: use `field_names`.
"""

from __future__ import annotations

from types import MappingProxyType

TYPE_CHECKING = False  # `typing` itself costs the launch path start-up time
if TYPE_CHECKING:
    from typing import dataclass_transform
else:

    def dataclass_transform(**_options: object) -> object:
        """At run time a no-op; type checkers read `Frozen` subclasses as frozen dataclasses."""
        return lambda cls: cls


_NO_DEFAULT = object()


@dataclass_transform(frozen_default=True)
class Frozen:
    """Base of an immutable value class; see the module's documentation."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    _field_set: frozenset[str] = frozenset()
    _compared: tuple[str, ...] = ()
    _defaults: MappingProxyType[str, object] = MappingProxyType({})
    _kw_only = False
    _post_init = False

    def __init_subclass__(
        cls, *, kw_only: bool = False, uncompared: tuple[str, ...] = (), **options: object
    ) -> None:
        super().__init_subclass__(**options)
        # The class's own annotations (names only, so unevaluated strings are fine); not
        # inspect.get_annotations, because importing `inspect` is what this module avoids.
        own = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
        fields = cls._fields + own
        unknown = [name for name in uncompared if name not in fields]
        if unknown:
            raise TypeError(f"{cls.__name__}: uncompared names no field: {unknown}")
        defaults = dict(cls._defaults)
        for name in own:
            default = cls.__dict__.get(name, _NO_DEFAULT)
            if isinstance(default, list | dict | set):
                raise ValueError(f"{cls.__name__}.{name}: a mutable default would be shared")
            if default is not _NO_DEFAULT:
                defaults[name] = default
        cls._fields = fields
        cls._field_set = frozenset(fields)
        cls._compared = tuple(name for name in fields if name not in uncompared)
        cls._defaults = MappingProxyType(defaults)
        cls._kw_only = kw_only
        cls._post_init = hasattr(cls, "__post_init__")
        cls.__match_args__ = () if kw_only else fields

    def __init__(self, *args: object, **kwargs: object) -> None:
        cls = type(self)
        if args:
            if cls._kw_only or len(args) > len(cls._fields):
                allowed = 0 if cls._kw_only else len(cls._fields)
                raise TypeError(
                    f"{cls.__name__}() takes {allowed} positional arguments "
                    f"but {len(args)} were given"
                )
            for name in cls._fields[: len(args)]:
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            kwargs.update(zip(cls._fields, args, strict=False))
        if not cls._field_set.issuperset(kwargs):
            unexpected = next(name for name in kwargs if name not in cls._field_set)
            raise TypeError(f"{cls.__name__}() got an unexpected argument {unexpected!r}")
        values = self.__dict__
        values.update(cls._defaults)
        values.update(kwargs)
        if len(values) < len(cls._fields):
            missing = next(name for name in cls._fields if name not in values)
            raise TypeError(f"{cls.__name__}() missing required argument {missing!r}")
        if cls._post_init:
            self.__post_init__()  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of a frozen {type(self).__name__}")

    def _key(self) -> tuple[object, ...]:
        values = self.__dict__
        return tuple(values[name] for name in self._compared)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Frozen)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        values = self.__dict__
        shown = ", ".join(f"{name}={values[name]!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"


def field_names(value: Frozen | type[Frozen]) -> tuple[str, ...]:
    """The fields of a `Frozen` class or instance, in order (`dataclasses.fields`' names)."""
    return value._fields
