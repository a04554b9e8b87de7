"""Kubernetes' rules for names and labels, and the Istio conventions the two directions share."""

from __future__ import annotations

import re

INJECTION_LABEL = "istio-injection"  # on a Namespace: enabled | disabled
INJECT_KEY = "sidecar.istio.io/inject"  # on a pod: label (Istio >= 1.10) or annotation, "true" | "false"
# Istio's protocol selection by port name: `<protocol>` or `<protocol>-<suffix>` (istio.io, "Protocol Selection")
PROTOCOL_PREFIXES = ("http", "http2", "https", "grpc", "grpc-web", "tcp", "tls", "udp", "mongo", "mysql", "redis")
HTTP_PROTOCOLS = ("http", "http2", "grpc", "grpc-web")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def is_dns_label(name: str) -> bool:
    """RFC 1123 label: Services, Namespaces, container names (63 characters at most)."""
    return bool(_DNS_LABEL.match(name))


def is_dns_subdomain(name: str) -> bool:
    """RFC 1123 subdomain: Deployments, ServiceAccounts (253 characters at most)."""
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def label_problem(key: str, value: str) -> str | None:
    """Why Kubernetes rejects this label, or None when it is valid."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (is_dns_subdomain(prefix) and prefix):
        return f"label key prefix '{prefix}' is not a DNS subdomain"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key '{key}' is not a valid label name (63 characters of [-A-Za-z0-9_.], alphanumeric at the ends)"
        )
    if len(value) > 63 or not _LABEL_NAME.match(value):
        return (
            f"label value '{value}' of '{key}' is not valid (63 characters of [-A-Za-z0-9_.], alphanumeric at the ends)"
        )
    return None


def port_protocol(name: str | None) -> str | None:
    """The protocol Istio reads from a Service port's name, or None when the name says none."""
    head = (name or "").lower()
    if head.startswith("grpc-web"):
        return "grpc-web"
    head = head.split("-", 1)[0]
    return head if head in PROTOCOL_PREFIXES else None
