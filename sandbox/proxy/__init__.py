"""The sidecar: pure routing/balancing/resilience, and the data path that carries decisions out."""
