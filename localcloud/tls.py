"""The local cloud's own certificate authority, made at start: a CA and one server certificate for its loopback
names (localhost, 127.0.0.1, ::1). Its gRPC and REST services speak TLS like the real endpoints, and the env file
points the standard trust settings at a bundle of the usual public roots plus that CA (`tls/trust.pem`), so the
official clients work with only an endpoint change, and curl, pip or anything else run in a shell that sourced it
still trusts the real sites."""
from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

# What clients read to find the roots they trust: gRPC (C core), requests, httpx/OpenSSL, curl.
TRUST_VARIABLES = ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class LocalTls:
    ca_file: Path
    trust_file: Path          # the public roots (certifi's, else the system's) and the local CA
    key_pem: bytes
    cert_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        folder = self.ca_file.parent
        (folder / "server.pem").write_bytes(self.cert_pem)
        (folder / "server.key").write_bytes(self.key_pem)
        (folder / "server.key").chmod(0o600)
        ctx.load_cert_chain(folder / "server.pem", folder / "server.key")
        return ctx

    def trust_env(self) -> dict[str, str]:
        return {name: str(self.trust_file) for name in TRUST_VARIABLES}


_MADE: dict[str, tuple[bytes, bytes, bytes]] = {}


def make(folder: Path) -> LocalTls:
    """One CA and server certificate per process, written into each cloud's folder: clients that load their roots
    once per process (gRPC's default roots) keep trusting every local cloud the process starts."""
    if "pems" not in _MADE:
        _MADE["pems"] = _generate()
    ca_pem, key_pem, cert_pem = _MADE["pems"]
    folder.mkdir(parents=True, exist_ok=True)
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_pem)
    trust_file = folder / "trust.pem"
    trust_file.write_bytes(_public_roots() + ca_pem)
    return LocalTls(ca_file=ca_file, trust_file=trust_file, key_pem=key_pem, cert_pem=cert_pem)


def _public_roots() -> bytes:
    """The roots a client trusts when nothing is set: certifi's bundle (what requests uses), else OpenSSL's."""
    try:
        import certifi
        path = certifi.where()
    except ImportError:
        path = ssl.get_default_verify_paths().cafile or ""
    try:
        data = Path(path).read_bytes() if path else b""
    except OSError:
        data = b""
    return data if not data or data.endswith(b"\n") else data + b"\n"


def _generate() -> tuple[bytes, bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hfgate local cloud CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    from localcloud.gateway import SERVED_HOSTS
    # Loopback names, and the Google hosts the local cloud answers for through its gateway (localcloud.gateway).
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
             x509.IPAddress(ipaddress.ip_address("::1")), *(x509.DNSName(h) for h in SERVED_HOSTS)]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (ca.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))
