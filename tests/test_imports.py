"""The package map holds: every import in sandbox/ is one ARCHITECTURE.md's table allows, and no
module imports itself back through others.

Imports are read from the source (module level, inside functions and under TYPE_CHECKING alike),
so a lazy import is a dependency too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT / "sandbox"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SANDBOX.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The sandbox modules `path` imports (a `from package import name` counts the submodule)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("sandbox"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sandbox"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                yield sub if sub in known else node.module


def table() -> list[tuple[list[str], list[str], bool]]:
    """(the rows' paths as module prefixes, what they may import, whether that is everything)."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Packages") :]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`sandbox"):
            continue
        owners = [p.rstrip("/").removesuffix(".py").replace("/", ".") for p in re.findall(r"`([^`]+)`", cells[0])]
        allowed = [f"sandbox.{name}" for name in re.findall(r"`([a-z_.]+)`", cells[2])]
        rows.append((owners, allowed, cells[2].startswith("everything")))
    return rows


def owner_row(module: str, rows: list[tuple[list[str], list[str], bool]]) -> tuple[list[str], list[str], bool]:
    for row in rows:
        if any(module == owner or module.startswith(owner + ".") for owner in row[0]):
            return row
    raise AssertionError(f"{module} belongs to no row of ARCHITECTURE.md's package table")


def test_every_import_is_one_the_package_table_allows() -> None:
    known = modules()
    rows = table()
    assert len(rows) >= 10, "the package table was not found"
    wrong = []
    for module, path in sorted(known.items()):
        if module == "sandbox":
            continue
        owners, allowed, everything = owner_row(module, rows)
        if everything:
            continue
        for target in imports(path, known):
            if target == "sandbox" or any(target == o or target.startswith(o + ".") for o in owners):
                continue  # the package itself (and its __version__)
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{module} imports {target}")
    assert wrong == [], "imports ARCHITECTURE.md does not allow:\n" + "\n".join(wrong)


def test_no_module_imports_itself_back() -> None:
    known = modules()
    graph = {m: {t for t in imports(p, known) if t in known and t != m} for m, p in known.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)
