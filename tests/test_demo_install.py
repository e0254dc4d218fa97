"""`make demo` from a fresh clone: the lean install the README promises (slow: runs pip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_make_demo_from_a_fresh_clone_is_lean(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("make") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git, make and a git checkout of the project")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    started = time.monotonic()
    run = subprocess.run(["make", "demo"], cwd=clone, capture_output=True, text=True, env=env, timeout=900)
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "8 photo(s), 8 ok, 0 failed" in run.stdout + run.stderr
    venv_mb = _tree_size(clone / ".venv") / 1e6
    print(f"make demo: {seconds:.1f} s, venv {venv_mb:.0f} MB")
    # The demo never needs torch: its absence is what keeps the venv small.
    assert not list((clone / ".venv").glob("lib/python*/site-packages/torch"))
    assert venv_mb < 800, f"demo venv is {venv_mb:.0f} MB"
    assert seconds < 180, f"make demo took {seconds:.0f} s"
