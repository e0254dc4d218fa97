"""docs/ARCHITECTURE.md's module table, read the way the docs and layer tests check it."""

from __future__ import annotations

import re

from support import ROOT

ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("clipcrop_plugin", "trainer")

# A table row: | 5 store | `clipcrop_plugin/store/store.py` | its job |
_ROW = re.compile(r"^\| (shared|\d+ [a-z/]+) \| `((?:clipcrop_plugin|trainer)/[^`]+\.py)` \| (.+?) \|\s*$")


def architecture_rows() -> dict[str, tuple[str, str]]:
    """``{module path: (stage label, job)}`` for every row of the module table."""
    rows: dict[str, tuple[str, str]] = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        if m := _ROW.match(line):
            assert m.group(2) not in rows, f"{m.group(2)} has two rows in docs/ARCHITECTURE.md"
            rows[m.group(2)] = (m.group(1), m.group(3))
    return rows


def package_modules() -> list[str]:
    """Every module file of the two packages, as a path from the repository root."""
    return sorted(str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
