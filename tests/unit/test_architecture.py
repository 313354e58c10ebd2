"""The tree is the architecture: imports between shifter's packages point one way only.

See CONTRIBUTING.md for the table this test enforces.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "shifter"

LEAVES = {"errors", "proc", "keyvalue", "frozen", "proxyenv", "data", "__init__"}
# For each package: the shifter packages it may import (leaves are always allowed).
ALLOWED: dict[str, set[str]] = {
    "image": set(),
    "registry": {"image"},
    "convert": {"image"},
    "ocibuild": {"image", "registry"},
    "engine": {"image", "registry", "convert"},
    "munge": set(),
    "libprep": set(),
    "gwclient": {"image", "munge"},
    "sys": set(),
    "devtools": set(),
    "gateway": {"image", "registry", "convert", "engine", "munge", "devtools"},
    "runtime": {"image", "munge", "sys", "gwclient"},
    "wlm": {"runtime", "image", "munge", "sys"},
    "cli": {
        "image", "registry", "convert", "engine", "ocibuild", "munge", "sys", "devtools", "libprep",
        "gateway", "gwclient", "runtime", "wlm",
    },
}

# Heavy libraries that must never load on the `shifter` launch path.
HEAVY = ("pydantic", "httpx", "fastapi", "sqlalchemy", "uvicorn", "tqdm", "zstandard", "isal")


def _top_package(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_modules(module_path: Path) -> set[str]:
    """Every absolute module name the file imports (`from P import n` counts as `P.n`
    too, since n may be a module)."""
    tree = ast.parse(module_path.read_text(), filename=str(module_path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _parts_below(module_path: Path, prefix: tuple[str, ...]) -> set[str]:
    """The names right below `prefix` (e.g. ("shifter",)) that the file imports."""
    found = set()
    for name in _imported_modules(module_path):
        parts = tuple(name.split("."))
        below = parts[len(prefix)] if len(parts) > len(prefix) else "__"
        # `from shifter import __version__` names no package
        if parts[: len(prefix)] == prefix and not below.startswith("__"):
            found.add(below)
    return found


def _shifter_imports(module_path: Path) -> set[str]:
    return _parts_below(module_path, ("shifter",))


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("module", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_one_way(module: Path) -> None:
    package = _top_package(module)
    imported = _shifter_imports(module) - LEAVES - {package}
    if package in LEAVES:
        allowed: set[str] = set()
    else:
        assert package in ALLOWED, f"new package {package!r}: add it to CONTRIBUTING.md and here"
        allowed = ALLOWED[package]
    wrong = imported - allowed
    assert not wrong, f"{module.relative_to(SRC)} ({package}) must not import {sorted(wrong)}"


# runtime's layers, lowest first: a module may import its own layer and those before it.
# All are subpackages but `start` (the last steps in the container, shared by a private
# launch and a job's `shifter`); `launch` may import any; `trace` is a leaf.
RUNTIME = PACKAGE / "runtime"
RUNTIME_LAYERS = (
    "request", "volumes", "config", "identity", "image", "site", "rootfs", "start", "job",
)
RUNTIME_LEAVES = {"trace", "__init__"}


def _runtime_part(module_path: Path) -> str:
    return module_path.relative_to(RUNTIME).parts[0].removesuffix(".py")


def _runtime_imports(module_path: Path) -> set[str]:
    return _parts_below(module_path, ("shifter", "runtime"))


def _runtime_modules() -> list[Path]:
    return sorted(p for p in RUNTIME.rglob("*.py"))


def test_runtime_is_made_of_subpackages() -> None:
    top = {p.name.removesuffix(".py") for p in RUNTIME.glob("*.py")}
    assert top <= {"__init__", "launch", "start", "trace"}, "put new runtime modules in a layer"
    subpackages = {p.name for p in RUNTIME.iterdir() if (p / "__init__.py").is_file()}
    expected = set(RUNTIME_LAYERS) - {"start"}
    assert subpackages == expected, "add a new subpackage to RUNTIME_LAYERS and CONTRIBUTING.md"


@pytest.mark.parametrize(
    "module", _runtime_modules(), ids=lambda p: str(p.relative_to(SRC))
)
def test_runtime_layers_point_down(module: Path) -> None:
    part = _runtime_part(module)
    if part in RUNTIME_LEAVES:
        allowed: set[str] = set()
    elif part in RUNTIME_LAYERS:
        allowed = set(RUNTIME_LAYERS[: RUNTIME_LAYERS.index(part) + 1])
    else:
        return  # the launch itself, directly in runtime/
    wrong = _runtime_imports(module) - allowed - RUNTIME_LEAVES
    where = module.relative_to(SRC)
    assert not wrong, f"{where} ({part}) must not import runtime's {sorted(wrong)}"


def test_only_proc_starts_programs() -> None:
    offenders = [
        str(m.relative_to(SRC))
        for m in _modules()
        if m != PACKAGE / "proc.py" and "subprocess" in _stdlib_imports(m)
    ]
    assert offenders == [], "run programs through shifter.proc"


def _stdlib_imports(module_path: Path) -> set[str]:
    tree = ast.parse(module_path.read_text(), filename=str(module_path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_nothing_imports_the_clis() -> None:
    offenders = [
        str(m.relative_to(SRC))
        for m in _modules()
        if _top_package(m) != "cli" and "cli" in _shifter_imports(m)
    ]
    assert offenders == []


def test_shifter_launch_path_loads_no_heavy_library() -> None:
    code = (
        "import sys; import shifter.cli.shifter; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"heavy modules on the launch path: {result.stdout}"
