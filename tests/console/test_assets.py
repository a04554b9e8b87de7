"""The console's browser assets ship inside the package: every vendored file comes from the npm
registry at a pinned version with its license (scripts/vendor-assets writes manifest.json), and no
page loads anything from elsewhere (the console works offline)."""

from __future__ import annotations

import json
import re
from pathlib import Path

CONSOLE = Path(__file__).resolve().parents[2] / "sandbox" / "console"
VENDOR = CONSOLE / "static" / "vendor"


def test_every_vendored_file_has_its_pinned_version_and_license() -> None:
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    names = {entry["name"] for entry in manifest}
    assert {"cytoscape", "dagre", "cytoscape-dagre", "uplot", "codemirror"} <= names
    for entry in manifest:
        assert re.fullmatch(r"\d+\.\d+\.\d+", entry["version"]), entry
        assert entry["integrity"].startswith("sha512-"), entry
        assert (VENDOR / entry["file"]).is_file(), entry
        assert (VENDOR / entry["licenseFile"]).read_text().strip(), entry
        assert entry["license"] == "MIT", entry
    shipped = {p.name for p in VENDOR.iterdir() if p.is_file() and p.name != "manifest.json"}
    assert shipped == {entry["file"] for entry in manifest}  # nothing unaccounted for


def test_pages_load_scripts_and_styles_only_from_the_console() -> None:
    for path in [*(CONSOLE / "templates").glob("*.html"), *(CONSOLE / "static").glob("*.js")]:
        text = path.read_text()
        sources = re.findall(r'(?:src|href)=["\']([^"\'{]+)', text)
        external = [s for s in sources if re.match(r"(https?:)?//", s)]
        assert external == [], (path.name, external)
