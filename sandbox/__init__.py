"""sandbox: a real Istio-compatible service mesh on a laptop, without Kubernetes."""

__version__ = "0.1.0"
