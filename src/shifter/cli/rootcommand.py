"""What `setupRoot` and `unsetupRoot` share: config first, then the check that they run as root."""

from __future__ import annotations

import os

from shifter.errors import PermissionDeniedError
from shifter.runtime.config import UdiRootConfig, load_udiroot_config


def load_config_as_root(prog: str) -> UdiRootConfig:
    """Load and validate udiRoot.conf, then refuse anyone but root (config errors come first)."""
    config = load_udiroot_config()
    if os.geteuid() != 0:
        raise PermissionDeniedError(
            f"{prog} must be run as root",
            hint=f"{prog} runs in the job prolog/epilog as root; users run `shifter`",
        )
    return config
