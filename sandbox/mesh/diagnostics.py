"""Diagnostics: what the loader and the analyzer say about the input, with file, line and path."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"  # Kiali's "unknown" severity, shown as Info in its UI


SEVERITY_RANK = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding. `path` is Kiali's slash path into the resource, e.g. `spec/http[0]/route[1]`."""

    code: str
    severity: Severity
    message: str
    file: str = "<unknown>"
    line: int = 0
    column: int = 0
    path: str = ""
    resource: str = ""  # "Kind/namespace/name", empty for file-level problems
    detail: str = ""  # optional extra text (e.g. the translated YAML of a legacy resource)

    def format(self) -> str:
        """`file:line:col: severity CODE message`, the compiler-style line CI tools parse."""
        where = f"{self.file}:{self.line}:{self.column}"
        subject = f" [{self.resource}{' ' + self.path if self.path else ''}]" if self.resource else ""
        return f"{where}: {self.severity} {self.code} {self.message}{subject}"

    def to_data(self) -> dict[str, Any]:
        """The flat JSON object of `analyze -o json` and the control plane's API (stable key order)."""
        return {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "resource": self.resource,
        }

    def sort_key(self) -> tuple[str, int, int, int, str]:
        return (self.file, self.line, self.column, SEVERITY_RANK[self.severity], self.code)


def join_path(base: str, segment: str | int) -> str:
    """Extend a Kiali path: keys are joined with '/', list indices are appended as `[i]`."""
    if isinstance(segment, int):
        return f"{base}[{segment}]"
    return f"{base}/{segment}" if base else segment


def nearest_position(positions: dict[str, tuple[int, int]], path: str, default: tuple[int, int]) -> tuple[int, int]:
    """The position of `path`, or of its nearest ancestor that has one."""
    while True:
        if path in positions:
            return positions[path]
        if not path:
            return default
        cut = max(path.rfind("/"), path.rfind("["))
        path = path[: max(cut, 0)]
