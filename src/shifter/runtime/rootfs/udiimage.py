"""Where the installation's own udiImage directory is: `<prefix>/lib/shifter/udiImage`,
next to the Slurm plugin, written by `shifter-udiimage` (scripts/install.sh). setupRoot
uses it when udiRoot.conf leaves optUdiImage unset.

The prefix is the directory above this Python's `bin`: setupRoot's launcher runs Python
with -S, so `sys.prefix` is the base interpreter's, not the virtual environment's."""

from __future__ import annotations

import os
import sys


def installed_udi_image() -> str:
    prefix = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    return os.path.join(prefix, "lib", "shifter", "udiImage")
