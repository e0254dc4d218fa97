"""Helpers the test folders share: plain functions and classes that cannot be fixtures.

An explicit package, imported as ``support`` (``tests/`` is on ``sys.path`` because the suite's
root ``conftest.py`` lives there). Fixtures live in the ``conftest.py`` of the folder that uses
them; nothing here is a test module and nothing here holds tests.
"""

from __future__ import annotations

from pathlib import Path

# The repository root and the tests folder, wherever a test file sits below tests/.
ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
