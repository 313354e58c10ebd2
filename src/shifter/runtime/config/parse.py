"""udiRoot.conf text to `UdiRootConfig`: the pure half of loading the configuration.

Rules beyond what each value converter checks:

- an unknown key is an error naming the line and the closest known key; so is an unknown
  `module_<name>_<setting>` (the original silently ignored those: `copypath` for `copyPath`);
- an empty value (`key=`) is the same as leaving the key out;
- list keys append on every occurrence; for other keys the last occurrence wins and a
  warning notes the earlier line;
- after the whole file is read: required keys, `etcPath` unless /etc is populated
  dynamically, every `conflict` and `defaultModules` name must be a configured module, and
  the default modules must be enabled and must not conflict with each other.
"""

from __future__ import annotations

from types import MappingProxyType

from shifter.errors import ConfigError
from shifter.keyvalue import iter_entries
from shifter.runtime.config.keys import (
    GLOBAL_KEYS,
    MODULE_PREFIX,
    KeySpec,
    closest,
    key_spec,
    module_key_spec,
    suggest_key,
)
from shifter.runtime.config.model import ModuleConfig, UdiRootConfig
from shifter.runtime.config.values import Origin, fail, module_name_problem


class _Settings:
    """Values (by model field) and origins (by key) collected for the file or one module."""

    __slots__ = ("origins", "values")

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.origins: dict[str, Origin] = {}


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.top = _Settings()
        self.modules: dict[str, tuple[Origin, _Settings]] = {}  # in file order
        self.warnings: list[str] = []

    def add(self, key: str, value: str, origin: Origin) -> None:
        if key.startswith(MODULE_PREFIX):
            self.add_module_key(key, value, origin)
            return
        spec = key_spec(key)
        if spec is None:
            raise self.unknown(key, origin, suggest_key(key))
        self.assign(self.top, spec, key, key, value, origin)

    def add_module_key(self, key: str, value: str, origin: Origin) -> None:
        # rpartition: settings never contain '_', so `module_a_b_siteFs` names module "a_b",
        # which the name check then refuses with a clear reason.
        name, sep, subkey = key[len(MODULE_PREFIX) :].rpartition("_")
        if not sep or not name or not subkey:
            raise fail(
                origin,
                key,
                f"unknown key {key!r}",
                hint="module keys look like module_<name>_<setting>, e.g. module_mpich_siteFs",
            )
        spec = module_key_spec(subkey)
        if spec is None:
            raise self.unknown(key, origin, suggest_key(key))
        problem = module_name_problem(name)
        if problem:
            raise fail(origin, key, problem)
        _, settings = self.modules.setdefault(name, (origin, _Settings()))
        self.assign(settings, spec, subkey, key, value, origin)

    def unknown(self, key: str, origin: Origin, suggestion: str | None) -> ConfigError:
        hint = f"did you mean {suggestion!r}?" if suggestion else (
            "see config-udiroot.md of shifter's documentation")
        return fail(origin, key, f"unknown key {key!r}", hint=hint)

    def assign(
        self, into: _Settings, spec: KeySpec, name: str, key: str, value: str, origin: Origin
    ) -> None:
        """Store one occurrence: `name` is the origins key (the subkey for modules)."""
        if spec.deprecated:
            self.warnings.append(f"{origin}: {key} is deprecated and has no effect; remove it")
        if not value:
            if not spec.repeats:
                into.values.pop(spec.field, None)
                into.origins.pop(name, None)
            return
        converted = spec.convert(value, origin, key)
        if spec.repeats:
            previous = into.values.get(spec.field, ())
            assert isinstance(previous, tuple) and isinstance(converted, tuple)
            into.values[spec.field] = previous + converted
            into.origins.setdefault(name, origin)
            return
        earlier = into.origins.get(name)
        if earlier is not None:
            self.warnings.append(
                f"{origin}: {key} is set again; this replaces the value from line {earlier.line}"
            )
        into.values[spec.field] = converted
        into.origins[name] = origin

    def build_modules(self) -> tuple[ModuleConfig, ...]:
        modules = []
        for name, (origin, settings) in self.modules.items():
            module = ModuleConfig(
                name=name,
                origin=origin,
                origins=MappingProxyType(dict(settings.origins)),
                **settings.values,  # type: ignore[arg-type]
            )
            for other in module.conflicts:
                if other == name:
                    raise module.error("conflict", f"module {name!r} cannot conflict with itself")
                if other not in self.modules:
                    raise module.error(
                        "conflict", f"{other!r} is not a configured module", hint=self.hint(other)
                    )
            modules.append(module)
        return tuple(modules)

    def hint(self, name: str) -> str:
        """What to say about `name`, which is not a configured module."""
        suggestion = closest(name, list(self.modules))
        if suggestion:
            return f"did you mean {suggestion!r}?"
        return f"configured modules: {', '.join(self.modules) or 'none'}"

    def check_default_modules(self, config: UdiRootConfig) -> None:
        for index, name in enumerate(config.default_modules):
            module = config.module(name)
            if module is None:
                raise config.error(
                    "defaultModules", f"{name!r} is not a configured module", hint=self.hint(name)
                )
            if not module.enabled:
                raise config.error(
                    "defaultModules",
                    f"module {name!r} is disabled ({module.key('enabled')}=0)",
                )
            for earlier in config.default_modules[:index]:
                other = config.module(earlier)
                if earlier in module.conflicts or (other is not None and name in other.conflicts):
                    raise config.error(
                        "defaultModules", f"modules {earlier!r} and {name!r} conflict"
                    )

    def build(self) -> UdiRootConfig:
        values = self.top.values
        missing = [spec.name for spec in GLOBAL_KEYS if spec.required and spec.field not in values]
        if missing:
            from shifter.data import UDIROOT_EXAMPLE, data_path

            raise ConfigError(
                f"required key{'s' if len(missing) > 1 else ''} not set: {', '.join(missing)}",
                source=self.source,
                hint=f"see {data_path(UDIROOT_EXAMPLE)} for recommended values",
            )
        if not values.get("populate_etc_dynamically") and "etc_path" not in values:
            raise ConfigError(
                "etcPath is not set, and populateEtcDynamically is 0",
                source=self.source,
                hint="set etcPath to a directory holding passwd, group and nsswitch.conf, "
                "or set populateEtcDynamically=1",
            )
        config = UdiRootConfig(
            source=self.source,
            modules=self.build_modules(),
            origins=MappingProxyType(dict(self.top.origins)),
            warnings=tuple(self.warnings),
            **values,  # type: ignore[arg-type]
        )
        self.check_default_modules(config)
        return config


def parse_udiroot_config(text: str, source: str) -> UdiRootConfig:
    """The configuration in `text`; `source` (a path) is what error messages name."""
    builder = _Builder(source)
    for entry in iter_entries(text, delimiter="=", source=source):
        builder.add(entry.key, entry.value, Origin(source, entry.line))
    return builder.build()
