"""Throw-away key material for the test services, made with `cryptography`.

A test CA signs a server certificate for 127.0.0.1 and localhost (the registry's HTTPS
variant), and a separate self-signed RSA key signs registry tokens. docker-registry 2.8
identifies the token-signing key by its libtrust key ID in the JWS `kid` header, so that ID
is computed here too.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Long enough for any test session, short enough that a leaked file is useless soon.
VALIDITY = datetime.timedelta(days=2)
# 2048 bits: the smallest size everything accepts; key generation stays well under a second.
RSA_BITS = 2048


def libtrust_kid(public_key: PublicKeyTypes) -> str:
    """The libtrust key ID docker-registry matches against `kid`: base32 of a SHA-256 prefix.

    SHA-256 of the DER SubjectPublicKeyInfo, first 30 bytes (exactly 48 base32 characters, so
    no padding), in 12 groups of 4 joined by ':'.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "shifter tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: rsa.RSAPublicKey
) -> x509.CertificateBuilder:
    # Backdated a little so a clock that is a few seconds off does not reject a fresh cert.
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
    )


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class SigningKey:
    """An RSA key with a self-signed cert: the cert goes into the registry's root bundle."""

    private_key: rsa.RSAPrivateKey
    certificate: Path
    kid: str

    def private_pem(self) -> bytes:
        """PEM of the private key, as PyJWT takes it."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def make_ca(directory: Path) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A CA allowed to sign server certificates; writes `ca.crt` (clients trust this file)."""
    key = _new_key()
    name = _name("shifter test CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_cert(directory / "ca.crt", cert)
    return key, cert


def make_server_cert(
    directory: Path, ca_key: rsa.RSAPrivateKey, ca_cert: x509.Certificate
) -> tuple[Path, Path]:
    """A server cert for 127.0.0.1 and localhost; returns (cert, key) paths.

    Clients match an IP address only against an IP subjectAltName, never the CN, hence
    both SAN entries.
    """
    key = _new_key()
    cert = (
        _builder(_name("localhost"), ca_cert.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    _write_cert(cert_path, cert)
    _write_key(key_path, key)
    return cert_path, key_path


def make_signing_key(directory: Path, name: str = "token-signer") -> SigningKey:
    """A fresh token-signing key; its self-signed cert is written to `NAME.crt`."""
    key = _new_key()
    subject = _name(f"shifter test {name}")
    cert = _builder(subject, subject, key.public_key()).sign(key, hashes.SHA256())
    cert_path = directory / f"{name}.crt"
    _write_cert(cert_path, cert)
    return SigningKey(private_key=key, certificate=cert_path, kid=libtrust_kid(key.public_key()))

