"""Fixtures shared by the daemon tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    """An empty folder for the daemon to watch."""
    d = tmp_path / "photos"
    d.mkdir()
    return d
