"""Where the installation's own udiImage directory is: `<prefix>/lib/shifter/udiImage`,
next to the Slurm plugin, written by `shifter-udiimage` (scripts/install.sh). setupRoot
uses it when udiRoot.conf leaves optUdiImage unset."""

from __future__ import annotations

import os
import sys


def installed_udi_image() -> str:
    return os.path.join(sys.prefix, "lib", "shifter", "udiImage")
