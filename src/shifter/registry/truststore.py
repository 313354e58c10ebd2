"""The system's CA certificates, loaded as OpenSSL's hashed directory rather than its bundle.

`ssl.create_default_context()` parses the whole CA bundle (about 140 certificates on Debian)
before the first connection: 40-100 ms of every `shifter-imagegw convert` on the development
VM, a fifth of its start-up. Debian's `update-ca-certificates` writes the same certificates
twice: the bundle `/etc/ssl/certs/ca-certificates.crt`, and one link per certificate in that
directory under its subject hash, from which OpenSSL reads a certificate only when a
handshake asks for that issuer. When the layout is that one (the bundle inside the hashed
directory) and the environment (`SSL_CERT_FILE`, `SSL_CERT_DIR`) names no other bundle or
directory, the directory alone is loaded: the same trusted set, read lazily. Anything else
(another distribution's layout, a site's own bundle or directory) keeps Python's default.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping

# c_rehash's names: the subject hash, then a sequence number (`.r0`... are CRLs).
_HASHED_NAME = re.compile(r"[0-9a-f]{8}\.[0-9]+")


def hashed_ca_directory(
    environ: Mapping[str, str] | None = None,
    paths: ssl.DefaultVerifyPaths | None = None,
) -> str | None:
    """OpenSSL's CA directory when it holds the default bundle's certificates under their
    hash names (Debian's layout) and the environment chooses no other bundle or directory
    (naming the default ones is fine); else None."""
    environ = os.environ if environ is None else environ
    paths = paths or ssl.get_default_verify_paths()
    directory = os.path.realpath(paths.openssl_capath)
    bundle = os.path.realpath(paths.openssl_cafile)
    chosen_bundle = environ.get(paths.openssl_cafile_env)
    chosen_directory = environ.get(paths.openssl_capath_env)
    if chosen_bundle and os.path.realpath(chosen_bundle) != bundle:
        return None
    if chosen_directory and os.path.realpath(chosen_directory) != directory:
        return None  # a list of directories (a:b) lands here too
    if os.path.dirname(bundle) != directory or not os.path.isfile(bundle):
        return None
    try:
        with os.scandir(directory) as entries:
            if any(_HASHED_NAME.fullmatch(entry.name) for entry in entries):
                return directory
    except OSError:
        pass
    return None


def default_context(environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """A client context verifying against the system's CAs, as `create_default_context()`
    makes it, but reading the CA directory lazily when that trusts the same certificates."""
    directory = hashed_ca_directory(environ)
    if directory is None:
        return ssl.create_default_context()
    return ssl.create_default_context(capath=directory)
