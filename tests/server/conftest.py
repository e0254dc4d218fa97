"""Fixtures of the server tests (``sample``, the per-test library, is in ``tests/conftest.py``:
the job-layer tests serve it too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.server import SampleLibrary, build_library


@pytest.fixture(scope="module")
def shared_sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SampleLibrary]:
    """A library shared by the read-only tests of one module (never write through it)."""
    lib = build_library(tmp_path_factory.mktemp("shared"))
    yield lib
    lib.library.close()
