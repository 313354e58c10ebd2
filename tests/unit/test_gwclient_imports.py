"""`shifter.gwclient` is on the `shifter` launch path: importing it must stay cheap.

HTTP, TLS, JSON, logging and libmunge load with the first request, not at import; a new
module-level import of any of them would cost every container launch milliseconds.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

DEFERRED = (
    "http.client", "ssl", "email.parser", "json", "logging", "ctypes", "urllib.parse",
    "typing", "shifter.munge.libmunge", "httpx",
)


def test_importing_the_client_loads_no_request_machinery() -> None:
    code = (
        "import sys; import shifter.gwclient; "
        f"print(','.join(m for m in {DEFERRED!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == ""
