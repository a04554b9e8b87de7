"""The contract between the control plane and its proxies: what a snapshot holds, how it is
encoded, and the push protocol's messages. Both sides import this package; the proxy never
imports `sandbox.control`, and the control plane never imports `sandbox.proxy`."""
