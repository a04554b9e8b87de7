"""The catalogue: every code the analyzer emits, with its message and default severity.

KIA codes carry Kiali's exact message text and default severity (kiali/kiali
`models/istio_validation.go`); checkers may change the severity at runtime as Kiali does (see
each checker). SBX1xx codes are Istio's own schema/semantic validation
(`istio/istio pkg/config/validation`); their messages are Istio's, with the offending value
filled in by the checker, so the catalogue holds a title. SBX7xx say what this version's sidecars
do not enforce. Loader (SBX0xx), legacy translation
(SBX2xx), Compose (SBX3xx), control plane (SBX4xx), `up` preflight (SBX5xx) and Kubernetes export/import
(SBX6xx) codes are listed too, so SARIF output can describe every rule it reports.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.mesh.diagnostics import Severity

E, W, N = Severity.ERROR, Severity.WARNING, Severity.INFO  # N: "note", Kiali's "unknown"


@dataclass(frozen=True, slots=True)
class Check:
    code: str
    message: str
    severity: Severity


def _table(*rows: tuple[str, Severity, str]) -> dict[str, Check]:
    return {code: Check(code, message, severity) for code, severity, message in rows}


KIALI = _table(
    # generic
    ("KIA0002", E, "More than one selector-less object in the same namespace"),
    ("KIA0003", E, "More than one object applied to the same workload"),
    ("KIA0004", W, "No matching workload found for the selector in this namespace"),
    ("KIA0005", E, "No matching namespace found or namespace is not accessible"),
    # AuthorizationPolicy
    ("KIA0101", W, "Namespace not found for this rule"),
    ("KIA0102", W, "Only HTTP methods and Istio wildcards are allowed"),
    ("KIA0104", E, "This host has no matching entry in the service registry"),
    ("KIA0105", E, "This field requires mTLS to be enabled"),
    ("KIA0106", E, "Service Account not found for this principal"),
    # DestinationRule
    ("KIA0201", W, "More than one DestinationRules for the same host subset combination"),
    ("KIA0202", E, "This host has no matching entry in the service registry (service, workload or service entries)"),
    ("KIA0203", E, "This subset's labels are not found in any matching host"),
    ("KIA0204", W, "mTLS settings of a non-local Destination Rule are overridden"),
    ("KIA0205", E, "PeerAuthentication enabling mTLS at mesh level is missing"),
    ("KIA0206", E, "PeerAuthentication enabling namespace-wide mTLS is missing"),
    ("KIA0207", E, "PeerAuthentication with TLS strict mode found, it should be permissive"),
    ("KIA0208", E, "PeerAuthentication enabling mTLS found, permissive mode needed"),
    ("KIA0209", W, "This subset has not labels"),
    # Gateway
    ("KIA0301", W, "More than one Gateway for the same host port combination"),
    ("KIA0302", W, "No matching workload found for gateway selector in this namespace"),
    # PeerAuthentication
    ("KIA0401", E, "Mesh-wide Destination Rule enabling mTLS is missing"),
    ("KIA0501", E, "Destination Rule enabling namespace-wide mTLS is missing"),
    ("KIA0505", E, "Destination Rule disabling namespace-wide mTLS is missing"),
    ("KIA0506", E, "Destination Rule disabling mesh-wide mTLS is missing"),
    # Sidecar
    ("KIA1004", W, "This host has no matching entry in the service registry"),
    ("KIA1006", W, "Global default sidecar should not have workloadSelector"),
    (
        "KIA1007",
        N,
        "OutboundTrafficPolicy with empty mode value is ambiguous due to an Istio limitation. "
        "This may indicate ALLOW_ANY or REGISTRY_ONLY. Inspect the value using other means.",
    ),
    # VirtualService
    ("KIA1101", E, "DestinationWeight on route doesn't have a valid service (host not found)"),
    ("KIA1102", E, "VirtualService is pointing to a non-existent gateway"),
    ("KIA1104", W, "The weight is assumed to be 100 because there is only one route destination"),
    ("KIA1105", W, "This host subset combination is already referenced in another route destination"),
    ("KIA1106", W, "More than one Virtual Service for same host"),
    ("KIA1107", W, "Subset not found"),  # kiali.io docs say error; Kiali's code says WarningSeverity
    ("KIA1108", N, "Preferred nomenclature: <gateway namespace>/<gateway name>"),
    # ServiceEntry
    ("KIA1211", W, "More than one ServiceEntry for the same host and port"),
    ("KIA1212", W, "ServiceEntries have conflicting protocols for the same host and port"),
)

# Istio's validation, one code per rule. The checker's message names the offending value.
ISTIO = _table(
    ("SBX101", E, "route destination weight is negative"),
    ("SBX102", E, "total destination weight = 0 with more than one destination"),
    ("SBX103", E, "regex is longer than 1024 characters"),
    ("SBX104", E, "regex does not compile (Istio uses RE2)"),
    ("SBX105", W, "HTTPMatchRequest cannot be empty"),
    ("SBX106", E, "StringMatch sets more than one of exact, prefix and regex"),
    ("SBX107", W, "StringMatch sets none of exact, prefix and regex"),
    ("SBX108", E, "prefix or regex string match is empty"),
    ("SBX109", E, "HTTP route rule cannot contain both rewrite and redirect"),
    ("SBX110", E, "HTTP route combines actions that exclude each other (route, redirect, directResponse, delegate)"),
    ("SBX111", E, "HTTP route, redirect or direct_response is required"),
    ("SBX112", E, "percentage is outside 0-100"),
    ("SBX113", E, "duration must be at least 1ms, in whole milliseconds"),
    ("SBX114", W, "abort configured, but error type not set"),
    ("SBX115", E, "fault abort status is invalid (HTTP 200-599 or a gRPC status name)"),
    ("SBX116", E, "HTTP fault injection must have an abort and/or a delay"),
    ("SBX117", E, "retry attempts cannot be negative"),
    ("SBX118", E, "http retry policy configured when attempts are set to 0 (disabled)"),
    ("SBX119", E, "retryOn names an unknown policy"),
    ("SBX120", W, "header match keys must be lowercase"),
    ("SBX121", E, "virtual service must have at least one host"),
    ("SBX122", E, "delegate virtual service must have no gateways, tls or tcp routes"),
    ("SBX123", E, "http, tcp or tls must be provided in virtual service"),
    ("SBX124", E, "wildcard host * is not allowed for virtual services bound to the mesh gateway"),
    ("SBX125", E, "redirect is invalid"),
    ("SBX126", E, "TCP/TLS route is required"),
    ("SBX127", E, "duplicate hosts in virtual service"),
    ("SBX130", E, "duplicate subset names"),
    ("SBX131", E, "subset name is invalid (an RFC 1123 label)"),
    ("SBX140", E, "server config must contain at least one host"),
    ("SBX141", E, "gateway must have at least one server"),
    ("SBX142", E, "port names in servers must be unique"),
    ("SBX143", E, "gateway server TLS settings do not fit its port protocol"),
    ("SBX150", E, "service entry must have at least one host"),
    ("SBX151", E, "only one of WorkloadSelector or Endpoints is allowed in Service Entry"),
    ("SBX160", E, "mesh/namespace peer authentication cannot have port level mTLS"),
    ("SBX161", E, "DENY or CUSTOM action without rules never triggers"),
    ("SBX162", E, "unknown condition key in an AuthorizationPolicy rule"),
    ("SBX163", E, "invalid IP address or CIDR range"),
    ("SBX164", W, "an HTTP method that is not upper case never matches"),
)

# Reported outside the analyzer (loader, legacy translation, Compose reader, control plane, `up`);
# listed so SARIF can describe them.
LOADER = _table(
    ("SBX000", E, "file cannot be read"),
    ("SBX001", E, "YAML syntax error"),
    ("SBX002", W, "unknown field"),
    ("SBX003", E, "wrong type"),
    ("SBX004", E, "invalid duration"),
    ("SBX005", E, "invalid enum value or apiVersion"),
    ("SBX006", E, "missing required field"),
    ("SBX007", E, "not an Istio resource or unknown kind"),
    ("SBX008", E, "input too big or too deep"),
    ("SBX009", E, "duplicate resource"),
    ("SBX010", W, "duplicate key"),
    ("SBX201", W, "deprecated Istio resource, translated to its modern equivalent"),
    ("SBX202", W, "part of a legacy resource cannot be translated faithfully"),
    ("SBX203", N, "legacy translation note"),
    ("SBX300", E, "compose file cannot be used"),
    ("SBX301", E, "workload needs both app and version labels"),
    ("SBX302", W, "workload has no port"),
    ("SBX303", E, "invalid replicas"),
    ("SBX304", E, "workloads of one service disagree on the port or ports"),
    ("SBX305", W, "two workloads are the same service version"),
    ("SBX306", E, "port out of range"),
    ("SBX307", E, "x-sandbox.port is not one of x-sandbox.ports"),
    ("SBX400", E, "endpoints file rejected; the last good endpoints stay"),
    ("SBX500", E, "no Istio directory"),
    ("SBX501", E, "config routes to a Compose service outside the mesh (no app/version labels)"),
    ("SBX502", E, "two services claim one host port"),
    ("SBX503", E, "unknown runtime"),
    ("SBX504", E, "a host port the mesh needs is already taken"),
    ("SBX505", E, "the local runtime cannot start a workload (no x-sandbox.local.command)"),
    ("SBX506", E, "the compose runtime has no Docker engine or Compose"),
    ("SBX600", W, "a field has no counterpart on the other side and is left out (Kubernetes export/import)"),
    ("SBX601", W, "an object or Compose service is not carried over (Kubernetes export/import)"),
    ("SBX602", E, "a Kubernetes object cannot be imported as written"),
    ("SBX603", N, "carried over with a change (Kubernetes export/import)"),
    ("SBX604", W, "the image is built from a local Dockerfile: push it where the cluster pulls from"),
    ("SBX605", E, "a name or label Kubernetes rejects"),
)

# What this version's sidecars do not enforce (enforcement.py).
ENFORCEMENT = _table(
    ("SBX701", W, "the resource (or part of it) is not enforced by this version's sidecars"),
    ("SBX702", W, "EnvoyFilter is accepted but not applied: the sidecars are not Envoy"),
    ("SBX703", W, "part of a Telemetry resource is not applied in this version"),
    ("SBX705", W, "a CUSTOM policy's extension provider cannot be called: the workloads it selects deny everything"),
    ("SBX706", W, "part of an extension provider is not applied in this version"),
)

CATALOGUE: dict[str, Check] = {**KIALI, **ISTIO, **ENFORCEMENT, **LOADER}


def describe(code: str) -> Check:
    """The catalogue entry of `code`, or a bare one for a code this version does not know."""
    return CATALOGUE.get(code) or Check(code, code, Severity.WARNING)
