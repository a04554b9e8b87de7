"""TLS for the sidecar: the workload identity's contexts (built once per certificate rotation, not
per connection), TLS origination contexts from a DestinationRule, and reading the peer's identity.

Keys stay off disk. `ssl.SSLContext.load_cert_chain` only reads files: on Linux the key goes
through an anonymous memory file (`memfd_create`) opened by path as /proc/self/fd/N and closed right
after loading; elsewhere a 0600 temporary file exists only while it loads.

Istio's sidecars offer ALPN `istio-peer-exchange` and `istio` on mTLS connections (and plain `h2`,
`http/1.1` after them); the server takes what the client offers. A server checks the client's chain
against the mesh root and takes its SPIFFE ID (URI SAN) as the source principal; a client checks the
server's chain and that its SPIFFE ID is one the destination service runs as.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.xds.certificate import WorkloadCertificate
from sandbox.xds.snapshot import Cluster, Endpoint, ServerTLS, TLSSettings

ISTIO_ALPN = ["istio-peer-exchange", "istio", "http/1.1"]


def load_identity(ctx: ssl.SSLContext, cert_chain: str, private_key: str) -> None:
    """Present this chain and key from `ctx`, never writing the key to disk."""
    material = (cert_chain + private_key).encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("workload-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, material)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
    else:  # pragma: no cover - macOS
        with tempfile.NamedTemporaryFile() as f:  # created 0600
            f.write(material)
            f.flush()
            ctx.load_cert_chain(f.name)


class DirectSSLObject(ssl.SSLObject):
    """`ssl.SSLObject` whose `read`, `write` and `pending` are OpenSSL's C methods themselves.

    The event loop's TLS transport (uvloop's and asyncio's) binds these three once per connection
    and calls them for every record; `ssl.py`'s wrappers add an interpreted Python frame to each
    call, which was the largest share of the interpreter work mutual TLS adds per request."""

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> DirectSSLObject:
        self: DirectSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        inner = self._sslobj  # type: ignore[attr-defined]
        # Instance attributes shadow the class's methods (same signatures: read(len, buffer=None)).
        vars(self).update(read=inner.read, write=inner.write, pending=inner.pending)
        return self


def fast_records(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.sslobject_class = DirectSSLObject
    return ctx


def mesh_context(cert: WorkloadCertificate, server_side: bool) -> ssl.SSLContext:
    """An mTLS context for this identity: presents the cert, requires the peer's, trusts the mesh root.

    The peer's SPIFFE ID (URI SAN) is checked by the caller (`spiffe_ids`), so no host name check."""
    ctx = fast_records(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Istio's minimum
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=cert.root_cert)
    load_identity(ctx, cert.cert_chain, cert.private_key)
    ctx.set_alpn_protocols(ISTIO_ALPN)
    return ctx


@dataclass(frozen=True)
class MeshContexts:
    """The workload identity's contexts, made once per certificate."""

    certificate: WorkloadCertificate
    server: ssl.SSLContext
    client: ssl.SSLContext

    @classmethod
    def of(cls, cert: WorkloadCertificate) -> MeshContexts:
        return cls(cert, mesh_context(cert, server_side=True), mesh_context(cert, server_side=False))


class OriginationError(ValueError):
    """A DestinationRule's TLS settings this proxy cannot use (a file it cannot read, ...)."""


def origination_context(settings: TLSSettings) -> ssl.SSLContext:
    """TLS origination to a server outside the mesh (DestinationRule SIMPLE or MUTUAL): the system's
    trust store unless `caCertificates` names a CA file; MUTUAL presents the client certificate."""
    if settings.problem:  # a credentialName the control plane could not resolve
        raise OriginationError(settings.problem)
    ctx = fast_records(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if settings.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif settings.ca_certificates:
            ctx.load_verify_locations(cafile=settings.ca_certificates)
        else:
            ctx.load_default_certs()
        if settings.mode == "MUTUAL":
            if not settings.client_certificate or not settings.private_key:
                raise OriginationError("MUTUAL needs clientCertificate and privateKey")
            ctx.load_cert_chain(settings.client_certificate, settings.private_key)
    except (OSError, ssl.SSLError) as exc:
        raise OriginationError(f"TLS settings for {settings.mode}: {exc}") from None
    if settings.subject_alt_names:
        ctx.check_hostname = False  # the SANs are checked after the handshake (`matches_names`)
    return ctx


def peer_certificate(ssl_object: Any) -> dict[str, Any]:
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    return cert if isinstance(cert, dict) else {}


def spiffe_ids(cert: dict[str, Any]) -> list[str]:
    """The certificate's URI SANs that are SPIFFE IDs."""
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI" and value.startswith("spiffe://")]


def matches_names(cert: dict[str, Any], names: tuple[str, ...]) -> bool:
    """A DestinationRule's subjectAltNames: any DNS or URI SAN of the server equals one of them."""
    sans = {value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "URI")}
    return any(name in sans for name in names)


def certificate_hash(ssl_object: Any) -> str:
    """SHA-256 of the peer certificate (DER), in hex: XFCC's Hash."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return hashlib.sha256(der).hexdigest() if der else ""


# RFC 4514's short names for the attributes Python's ssl spells out
_RDN = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
    "streetAddress": "STREET",
    "userId": "UID",
}


def xfcc_element(own_id: str, ssl_object: Any) -> str:
    """This hop's X-Forwarded-Client-Cert element for a mutual TLS client, as Istio's sidecars set it
    (forward_client_cert_details APPEND_FORWARD with Subject, URI and DNS): `By` our SPIFFE ID,
    `Hash` the client certificate's, `Subject` its subject ("" for workload certificates), then its
    URI and DNS SANs."""
    cert = peer_certificate(ssl_object)
    subject = ",".join("+".join(f"{_RDN.get(k, k)}={v}" for k, v in rdn) for rdn in reversed(cert.get("subject", ())))
    parts = [f"By={own_id}"] if own_id else []
    parts += [f"Hash={certificate_hash(ssl_object)}", f'Subject="{subject}"']
    parts += [f"URI={value}" for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]
    parts += [f"DNS={value}" for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    return ";".join(parts)


def tls_error(reason: str) -> str:
    """UPSTREAM_TRANSPORT_FAILURE_REASON for a failed handshake, as Envoy words it."""
    return f"TLS_error:|{reason}:TLS_error_end"


@dataclass(frozen=True)
class Origination:
    """How to open one upstream connection with TLS: the context, the SNI, and the server names
    (DNS or URI SANs) one of which the server's certificate must carry (none: the chain is enough)."""

    context: ssl.SSLContext
    server_name: str | None
    names: tuple[str, ...] = ()
    mesh: bool = False  # the workload identity's mutual TLS (ISTIO_MUTUAL)

    def verify(self, ssl_object: Any) -> str:
        """ "" when the server may be talked to; else the transport failure reason."""
        if self.names and not matches_names(peer_certificate(ssl_object), self.names):
            return tls_error("CERTIFICATE_VERIFY_FAILED")  # Envoy checks SANs while verifying the chain
        return ""


class Credentials:
    """The TLS the proxy uses now: the workload identity's contexts (replaced at each rotation;
    open connections keep the ones they were made with) and the contexts of TLS origination, one
    per DestinationRule `tls` setting. Envoy's transport socket choice per upstream endpoint is
    `origination`: auto mTLS per endpoint, else the cluster's mode."""

    def __init__(self) -> None:
        self.mesh: MeshContexts | None = None
        # settings -> (its files' stamps when read, the context or why there is none, what is wrong)
        self._originating: dict[TLSSettings, tuple[FileStamps, ssl.SSLContext | OriginationError, str]] = {}

    def set_certificate(self, cert: WorkloadCertificate) -> None:
        if self.mesh is None or self.mesh.certificate.serial != cert.serial:
            self.mesh = MeshContexts.of(cert)

    @property
    def spiffe_id(self) -> str:
        return self.mesh.certificate.spiffe_id if self.mesh is not None else ""

    def origination(self, cluster: Cluster, endpoint: Endpoint | None) -> Origination | None:
        """The TLS for a new connection to `endpoint` of `cluster`: None for plaintext. Raises
        OriginationError when TLS is asked for and cannot be had (no certificate yet, a bad file)."""
        settings = cluster.traffic_policy.tls
        if settings.auto:
            mode = "ISTIO_MUTUAL" if endpoint is not None and endpoint.mtls else "DISABLE"
        else:
            mode = settings.mode
        if mode == "DISABLE":
            return None
        service = cluster.service
        if mode == "ISTIO_MUTUAL":
            if self.mesh is None:
                raise OriginationError("ISTIO_MUTUAL: no workload certificate yet")
            # Istio's SNI for mesh traffic names the cluster: outbound_.<port>_.<subset>_.<host>
            sni = settings.sni or (f"outbound_.{cluster.port}_.{cluster.subset}_.{service}" if service else None)
            return Origination(self.mesh.client, sni, settings.subject_alt_names, mesh=True)
        cached = self._originating.get(settings)
        if cached is None:
            cached = (_origination_stamps(settings), _try_origination(settings), "")
            if len(self._originating) > 256:
                self._originating.clear()
            self._originating[settings] = cached
        context = cached[1]
        if isinstance(context, OriginationError):
            raise context
        # No `sni`: the service's host name, as Istio's auto SNI (the request's host) gives for it
        return Origination(context, settings.sni or service or None, settings.subject_alt_names)

    def reread_changed_files(self) -> None:
        """Origination contexts whose files changed on disk, read again; files that no longer read
        leave the context as it was (a certificate half copied in must not fail connections)."""
        for settings, (stamps, context, _) in list(self._originating.items()):
            now = _origination_stamps(settings)
            if now == stamps:
                continue
            fresh, problem = _try_origination(settings), ""
            if isinstance(fresh, OriginationError) and isinstance(context, ssl.SSLContext):
                problem = f"{settings.mode} origination: {fresh}; keeps the files it had"
                fresh = context
            self._originating[settings] = (now, fresh, problem)

    def problems(self) -> list[str]:
        return [problem for _, _, problem in self._originating.values() if problem]


FileStamps = tuple[tuple[int, int, int], ...]


def file_stamps(*paths: str | None) -> FileStamps:
    """What says that files changed: inode, size and modification time ((-1, -1, -1): unreadable;
    (0, 0, 0): no file named). An atomic rename, a copy in place and a truncation all show."""
    out = []
    for path in paths:
        if not path:
            out.append((0, 0, 0))
            continue
        try:
            st = os.stat(path)
        except OSError:
            out.append((-1, -1, -1))
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _origination_stamps(settings: TLSSettings) -> FileStamps:
    return file_stamps(settings.ca_certificates, settings.client_certificate, settings.private_key)


def _try_origination(settings: TLSSettings) -> ssl.SSLContext | OriginationError:
    try:
        return origination_context(settings)
    except OriginationError as exc:
        return exc


CERT_FILES = ("cert-chain.pem", "key.pem", "root-cert.pem")  # Istio's file-mounted workload certificate


def read_certificate_dir(directory: Path) -> WorkloadCertificate:
    """A workload certificate from Istio's files in `directory` (`sandbox proxy --certs`, for a
    sidecar run from a snapshot file alone); ValueError naming the file when one is unusable."""
    texts = []
    for name in CERT_FILES:
        try:
            texts.append((directory / name).read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{directory / name}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    chain, key, root = texts
    try:
        # The ssl module's own certificate decoder (what getpeercert returns): no 10 MB of
        # `cryptography` in a sidecar for four fields
        leaf = ssl._ssl._test_decode_cert(str(directory / CERT_FILES[0]))  # type: ignore[attr-defined]
        not_before = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(leaf["notBefore"]), dt.UTC)
        not_after = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(leaf["notAfter"]), dt.UTC)
        serial = int(leaf["serialNumber"], 16)
    except (ssl.SSLError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{directory / CERT_FILES[0]}: not a PEM certificate: {exc}") from None
    spiffe = next(iter(spiffe_ids(leaf)), "")
    if not spiffe:
        raise ValueError(f"{directory / CERT_FILES[0]}: the certificate has no SPIFFE ID (URI SAN)")
    return WorkloadCertificate(
        spiffe_id=spiffe,
        cert_chain=chain,
        private_key=key,
        root_cert=root,
        serial=serial,
        not_before=not_before,
        not_after=not_after,
        issued_at=not_before,
    )


_TLS_VERSIONS = {"TLSV1_2": ssl.TLSVersion.TLSv1_2, "TLSV1_3": ssl.TLSVersion.TLSv1_3}


def termination_context(server: ServerTLS, mesh: MeshContexts | None) -> ssl.SSLContext:
    """A Gateway server's TLS (SIMPLE, MUTUAL with its CA, or ISTIO_MUTUAL with the workload identity).
    Raises OriginationError naming what is unusable; the server then refuses handshakes."""
    if server.mode == "ISTIO_MUTUAL":
        if mesh is None:
            raise OriginationError("ISTIO_MUTUAL: no workload certificate yet")
        return mesh.server
    if server.problem:
        raise OriginationError(server.problem)
    ctx = fast_records(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.minimum_version = _TLS_VERSIONS.get(server.min_protocol_version, ssl.TLSVersion.TLSv1_2)
    if server.max_protocol_version in _TLS_VERSIONS:
        ctx.maximum_version = _TLS_VERSIONS[server.max_protocol_version]
    try:
        ctx.load_cert_chain(server.server_certificate, server.private_key)
        if server.mode == "MUTUAL":
            if not server.ca_certificates:
                raise OriginationError("MUTUAL needs a CA certificate (ca.crt or caCertificates)")
            ctx.load_verify_locations(cafile=server.ca_certificates)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise OriginationError(f"{server.credential_name or server.server_certificate}: {exc}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx
