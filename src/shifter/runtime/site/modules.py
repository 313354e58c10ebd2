"""Which site modules a launch activates: `--module`, `SHIFTER_MODULE` or `defaultModules`.

A selection replaces the defaults entirely. `none` (any letter case) means no modules;
otherwise a comma-separated list of names, each trimmed, case-sensitive, activated in the
order given. Unknown, disabled, repeated and conflicting names are errors.
"""

from __future__ import annotations

from shifter.errors import ShifterError
from shifter.runtime.config.load import ModuleConfig, UdiRootConfig
from shifter.runtime.request.selection import module_names


def select_modules(
    config: UdiRootConfig, selection: str | None, origin: str = "--module"
) -> tuple[ModuleConfig, ...]:
    """The active modules, in order; `selection` None means the configured defaults."""
    names = module_names(selection, config.default_modules)
    configured = ", ".join(module.name for module in config.modules) or "none"
    active: list[ModuleConfig] = []
    for name in names:
        module = config.module(name)
        if module is None:
            raise ShifterError(
                f"{origin}: unknown shifter module {name!r}",
                hint=f"configured modules: {configured}; --module=none selects none",
            )
        if not module.enabled:
            raise ShifterError(
                f"{origin}: module {name!r} is not enabled for use",
                hint=f"the site disabled it ({module.key('enabled')} in {config.source})",
            )
        if any(other.name == name for other in active):
            raise ShifterError(f"{origin}: module {name!r} is listed twice")
        for other in active:
            if other.name in module.conflicts or name in other.conflicts:
                raise ShifterError(
                    f"{origin}: cannot load conflicting modules {other.name!r} and {name!r}",
                    hint="choose one of them",
                )
        active.append(module)
    return tuple(active)
