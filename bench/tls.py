"""A throw-away self-signed certificate for the benchmark's registry.

Charliecloud 0.31 speaks only HTTPS to registries, so the registry every contender pulls from
serves TLS; clients skip verification (`--tls-no-verify`, `--insecure`) or, for our pusher,
trust this one certificate.
"""

from __future__ import annotations

from pathlib import Path

from shifter.devtools.registry import TLSFiles
from shifter.proc import run

VALIDITY_DAYS = "2"


def self_signed(directory: Path) -> TLSFiles:
    """A key and a certificate for 127.0.0.1 (subjectAltName included: clients need it)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, certificate = directory / "registry.key", directory / "registry.crt"
    run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", key, "-out", certificate, "-days", VALIDITY_DAYS,
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ]
    )
    return TLSFiles(certificate=certificate, key=key)
