"""TLS secrets by name, as a Gateway's or a DestinationRule's `credentialName` refers to them.

In Kubernetes a credential is a Secret; here it is named under the Compose file's top-level
`x-sandbox.secrets`, as a directory or as files (relative paths are the Compose file's):

    x-sandbox:
      secrets:
        bookinfo-credential: ./certs/bookinfo        # tls.crt, tls.key, ca.crt (or cert, key, cacert)
        partner-mtls: {cert: a.pem, key: a.key, cacert: ca.pem}

A directory holds Kubernetes' TLS secret names (`tls.crt`, `tls.key`, and `ca.crt` for MUTUAL) or
Istio's generic secret names (`cert`, `key`, `cacert`). As in Istio, a MUTUAL server whose secret has
no CA certificate looks for one in the secret `<name>-cacert`. The gateway reads the files (no key
travels in a snapshot); the compose runtime mounts them into its container.

A DestinationRule's `credentialName` (TLS origination at a gateway, or at a sidecar the rule selects
by `workloadSelector`) names the client side: MUTUAL takes the certificate and key, and both SIMPLE
and MUTUAL verify the server with the secret's CA (`ca.crt`, else the secret `<name>-cacert`, as
Istio's SDS asks for `<name>-cacert`); a SIMPLE secret may hold the CA alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.mesh.topology import MeshSettings, SecretFiles

CERT_NAMES = ("tls.crt", "cert")
KEY_NAMES = ("tls.key", "key")
CA_NAMES = ("ca.crt", "cacert")


@dataclass(frozen=True)
class SecretPaths:
    """Absolute file paths ("" where the secret has none); `problem` says why it cannot be used."""

    cert: str = ""
    key: str = ""
    cacert: str = ""
    problem: str = ""


def resolve_secret(
    settings: MeshSettings,
    name: str,
    base: Path,
    mutual: bool = False,
    is_file: Callable[[Path], bool] = Path.is_file,
) -> SecretPaths:
    """The files of secret `name`; `mutual` also needs a CA (from `<name>-cacert` if not its own)."""
    paths = _files(settings, name, base, is_file)
    if paths is None:
        known = ", ".join(sorted(settings.secrets)) or "none"
        return SecretPaths(problem=f"secret '{name}' is not in x-sandbox.secrets (known: {known})")
    if not paths.cert or not paths.key:
        return SecretPaths(problem=f"secret '{name}' has no certificate and key (tls.crt and tls.key)")
    if mutual and not paths.cacert:
        ca = _files(settings, f"{name}-cacert", base, is_file)
        if ca is None or not ca.cacert:
            return SecretPaths(
                problem=f"secret '{name}' has no ca.crt (nor a secret '{name}-cacert'): MUTUAL needs one"
            )
        paths = SecretPaths(paths.cert, paths.key, ca.cacert)
    return paths


def resolve_client_secret(
    settings: MeshSettings,
    name: str,
    base: Path,
    mutual: bool,
    verify: bool = True,
    is_file: Callable[[Path], bool] = Path.is_file,
) -> SecretPaths:
    """A DestinationRule credentialName's files: the client certificate and key for `mutual`, the
    CA that verifies the server unless `verify` is off (insecureSkipVerify)."""
    paths = _files(settings, name, base, is_file)
    if paths is None:
        known = ", ".join(sorted(settings.secrets)) or "none"
        return SecretPaths(problem=f"secret '{name}' is not in x-sandbox.secrets (known: {known})")
    if mutual and (not paths.cert or not paths.key):
        problem = f"secret '{name}' has no certificate and key (tls.crt and tls.key): MUTUAL needs them"
        return SecretPaths(problem=problem)
    cacert = paths.cacert
    if not cacert:
        ca = _files(settings, f"{name}-cacert", base, is_file)
        cacert = ca.cacert if ca is not None else ""
    if verify and not cacert:
        return SecretPaths(problem=f"secret '{name}' has no ca.crt (nor a secret '{name}-cacert') to verify the server")
    return SecretPaths(paths.cert if mutual else "", paths.key if mutual else "", cacert)


def secret_paths(settings: MeshSettings, base: Path) -> list[Path]:
    """Every file or directory the secrets name, as the control plane resolves them against the
    Compose file's directory `base`: what a container runtime mounts (at these same paths) into
    the control plane and its proxies, so that the paths in their snapshots exist there."""
    named: list[str] = []
    for source in settings.secrets.values():
        named += [source] if isinstance(source, str) else [f for f in (source.cert, source.key, source.cacert) if f]
    return list(dict.fromkeys(_absolute(n, base) for n in named))


def _files(settings: MeshSettings, name: str, base: Path, is_file: Callable[[Path], bool]) -> SecretPaths | None:
    source = settings.secrets.get(name)
    if source is None:
        return None
    if isinstance(source, SecretFiles):
        return SecretPaths(*(str(_absolute(f, base)) if f else "" for f in (source.cert, source.key, source.cacert)))
    directory = _absolute(source, base)

    def first(names: tuple[str, ...]) -> str:
        return next((str(directory / n) for n in names if is_file(directory / n)), "")

    return SecretPaths(first(CERT_NAMES), first(KEY_NAMES), first(CA_NAMES))


def _absolute(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()
