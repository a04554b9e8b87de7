"""The sidecar: pure routing/balancing/resilience, and the data path that carries decisions out."""

from sandbox.proxy import native

native.install()  # before any data-path module is imported: compiled, or the source on disk
