"""Module selection: defaults, `none`, order, and the errors (spec 1.19)."""

from __future__ import annotations

import pytest

from shifter.errors import ShifterError
from shifter.runtime.config.load import parse_udiroot_config
from shifter.runtime.site.modules import select_modules

pytestmark = pytest.mark.unit

CONFIG = parse_udiroot_config(
    "udiMount=/u\nloopMount=/l\nimagePath=/i\nrootfsType=tmpfs\npopulateEtcDynamically=1\n"
    "module_mpich_siteEnv=A=1\nmodule_openmpi_conflict=mpich\nmodule_gpu_siteEnv=G=1\n"
    "module_off_enabled=0\ndefaultModules=mpich\n",
    "u.conf",
)


def _names(selection: str | None) -> list[str]:
    return [module.name for module in select_modules(CONFIG, selection)]


def test_defaults_none_and_order() -> None:
    assert _names(None) == ["mpich"]
    assert _names("none") == [] and _names("NONE") == []
    assert _names("gpu,mpich") == ["gpu", "mpich"]
    assert _names(" gpu , mpich ") == ["gpu", "mpich"]


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        ("nope", "unknown shifter module 'nope'"),
        ("GPU", "unknown shifter module 'GPU'"),
        ("off", "module 'off' is not enabled for use"),
        ("gpu,gpu", "module 'gpu' is listed twice"),
        ("mpich,openmpi", "cannot load conflicting modules 'mpich' and 'openmpi'"),
        ("openmpi,mpich", "cannot load conflicting modules 'openmpi' and 'mpich'"),
    ],
)
def test_selection_errors(selection: str, message: str) -> None:
    with pytest.raises(ShifterError) as caught:
        select_modules(CONFIG, selection, "SHIFTER_MODULE")
    assert str(caught.value) == f"SHIFTER_MODULE: {message}"
