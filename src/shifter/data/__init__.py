"""Files shipped inside the package (the wheel's package data): the example udiRoot.conf
and imagemanager.json, and the systemd unit templates `shifter-site-install` fills in."""

from __future__ import annotations

import os

UDIROOT_EXAMPLE = "udiRoot.conf.example"
IMAGEMANAGER_EXAMPLE = "imagemanager.json.example"
GATEWAY_UNIT = "shifter-imagegw.service"
GUNICORN_UNIT = "shifter-imagegw-gunicorn.service"
MOUNTD_UNIT = "shifter-mountd.service"


def data_path(name: str) -> str:
    """Where a shipped file is in this installation (no importlib: messages on the launch
    path name these files)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
