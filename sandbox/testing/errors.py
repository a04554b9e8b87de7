"""The fixture's one exception (a module of its own, so every part can raise it without importing
the others)."""

from __future__ import annotations


class MeshError(Exception):
    """A mesh operation failed; the message says what, where (file:line) and what to do."""
