"""The mesh CA (Istio's "Citadel"): a self-signed root kept on disk, short-lived SPIFFE workload certs.

The root (EC P-256) is generated on first start into the state directory (0700) as `root-cert.pem`
and `root-key.pem` (0600), and reused on restart so sidecars keep trusting each other across a
control-plane restart. Workload keys are generated here, live only in memory and travel only over
the authenticated push connection (the SDS analog); they are never written and never logged
(`WorkloadCertificate.__repr__` leaves the key out).

Defaults follow Istio (reference: docs/reference/istio-semantics.md 2.2): 24 h workload TTL, 10-year root,
rotation at 50% of the lifetime with a +-1% jitter (SECRET_GRACE_PERIOD_RATIO and its jitter).
"""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sandbox.mesh.names import DEFAULT_TRUST_DOMAIN, spiffe_id
from sandbox.xds.certificate import WorkloadCertificate

DEFAULT_WORKLOAD_TTL = dt.timedelta(hours=24)
ROOT_TTL = dt.timedelta(days=3650)
GRACE_PERIOD_RATIO = 0.5
GRACE_PERIOD_JITTER = 0.01
CLOCK_SKEW = dt.timedelta(minutes=1)  # not_before slack, so a slightly slow peer accepts a fresh cert
ROOT_CERT, ROOT_KEY = "root-cert.pem", "root-key.pem"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class MeshCA:
    def __init__(self, root_key: ec.EllipticCurvePrivateKey, root_cert: x509.Certificate, trust_domain: str) -> None:
        self._root_key = root_key
        self.root_cert = root_cert
        self.trust_domain = trust_domain
        self.root_pem = root_cert.public_bytes(serialization.Encoding.PEM).decode()

    def __repr__(self) -> str:
        return f"MeshCA(trust_domain={self.trust_domain!r}, root_serial={self.root_cert.serial_number:x})"

    @classmethod
    def load_or_create(cls, state_dir: str | Path, trust_domain: str = DEFAULT_TRUST_DOMAIN) -> MeshCA:
        """Reuse the root in `state_dir`, or generate one there (dir 0700, key 0600)."""
        directory = ensure_private_dir(state_dir)
        cert_path, key_path = directory / ROOT_CERT, directory / ROOT_KEY
        if cert_path.exists() and key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: the mesh CA key must be an EC key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()), trust_domain)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _self_signed_root(key, trust_domain)
        write_private(
            key_path, key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(key, cert, trust_domain)

    def issue(
        self,
        namespace: str,
        service_account: str,
        ttl: dt.timedelta = DEFAULT_WORKLOAD_TTL,
        now: dt.datetime | None = None,
    ) -> WorkloadCertificate:
        """A fresh key and a certificate whose only identity is the SPIFFE ID URI SAN."""
        now = now or _now()
        identity = spiffe_id(namespace, service_account, self.trust_domain)
        key = ec.generate_private_key(ec.SECP256R1())
        serial = x509.random_serial_number()
        not_before, not_after = now - CLOCK_SKEW, now + ttl
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))  # Istio's workload certs have an empty subject; the SAN is the identity
            .issuer_name(self.root_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True
            )  # digitalSignature, keyEncipherment
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._root_key.public_key()), critical=False
            )
            .sign(self._root_key, hashes.SHA256())
        )
        return WorkloadCertificate(
            spiffe_id=identity,
            cert_chain=cert.public_bytes(serialization.Encoding.PEM).decode(),
            private_key=key.private_bytes(
                _PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            root_cert=self.root_pem,
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            issued_at=now,
        )


_PEM = serialization.Encoding.PEM
_PKCS8 = serialization.PrivateFormat.PKCS8


def parsed(cert: WorkloadCertificate) -> x509.Certificate:
    """The leaf certificate of `cert`'s chain."""
    return x509.load_pem_x509_certificate(cert.cert_chain.encode())


def rotation_time(
    not_before: dt.datetime,
    not_after: dt.datetime,
    rng: random.Random,
    ratio: float = GRACE_PERIOD_RATIO,
    jitter: float = GRACE_PERIOD_JITTER,
) -> dt.datetime:
    """When to replace a cert: `expiry - grace`, grace = lifetime * (ratio +- jitter) (Istio's rotateTime)."""
    grace = ratio + jitter * (2 * rng.random() - 1)
    return not_after - (not_after - not_before) * grace


def ensure_private_dir(path: str | Path) -> Path:
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def write_private(path: Path, data: bytes) -> None:
    """Create `path` 0600 from the start (no window where another user could read it), atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _self_signed_root(key: ec.EllipticCurvePrivateKey, trust_domain: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain)])
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + ROOT_TTL)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
