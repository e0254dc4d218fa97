"""Shared fixtures. Area-specific helpers live next to their tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The EXIF sample corpus (real camera files); skips when ../shared is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"EXIF sample corpus not found at {CORPUS} (../shared is absent)")
    return CORPUS


@pytest.fixture(scope="session")
def exiftool() -> str:
    """Path of the exiftool binary; skips when it is not installed (CI installs it)."""
    path = shutil.which("exiftool")
    if not path:
        pytest.skip("exiftool is not installed (Debian package libimage-exiftool-perl)")
    return path


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never let a test read or write the real user's config, database or models."""
    base = tmp_path_factory.mktemp("userdirs")
    monkeypatch.setenv("CLIPCROP_DATA_DIR", str(base / "data"))
    monkeypatch.setenv("CLIPCROP_CONFIG", str(base / "config.toml"))
    # Tests of metadata mechanics (sidecars, embedding, hosts applying crops) need a crop to be
    # written whatever the scorer thinks of it: the user config of the suite always crops.
    # Crop-or-keep itself is tested in test_keep.py and test_guard.py with their own configs.
    (base / "config.toml").write_text("keep_margin = -inf\n", encoding="utf-8")
    monkeypatch.delenv("CLIPCROP_DB", raising=False)
    monkeypatch.delenv("CLIPCROP_MODEL_DIR", raising=False)
    # open_clip must never reach for the network in tests.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
