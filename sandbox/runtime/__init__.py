"""Runtimes: one mesh model, run as Compose containers (compose.py) or host processes (local.py)."""
