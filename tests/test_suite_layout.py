"""The suite's own layout: test modules live in the folder of the stage they test, share helpers
through the ``support`` package and fixtures through ``conftest.py``, never by importing each other."""

from __future__ import annotations

import ast

from support import TESTS

# The project-wide checks; every other test module belongs in a folder (see docs/ARCHITECTURE.md).
TOP_LEVEL = {"test_docs.py", "test_layers.py", "test_extras.py", "test_demo_install.py", "test_suite_layout.py"}


def _imported(path) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.append((node.module, node.lineno))
    return out


def test_no_test_module_imports_another_or_a_loose_helper() -> None:
    bad = [f"{path.relative_to(TESTS)}:{line} imports {name}"
           for path in sorted(TESTS.rglob("*.py")) for name, line in _imported(path)
           if name.split(".")[0].startswith(("test_", "conftest")) or name.split(".")[0].endswith("_helpers")]
    assert bad == [], "share helpers through tests/support/ and fixtures through conftest.py: " + "; ".join(bad)


def test_test_modules_live_in_a_stage_folder() -> None:
    loose = sorted(p.name for p in TESTS.glob("test_*.py") if p.name not in TOP_LEVEL)
    assert loose == [], f"move these into the tests/ folder of the stage they test: {loose}"
    assert not list((TESTS / "support").glob("test_*.py")), "tests/support/ holds helpers, not tests"
