"""The base package works without its extras, and a missing extra is named in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from clipcrop_plugin.extras import EXTRAS, MissingExtraError, extra_for_import_error, missing_modules, require_extra

# Runs the clipcrop CLI in a fresh interpreter in which the named top-level modules cannot be
# imported, as on a machine where their extra was never installed.
_RUNNER = textwrap.dedent(
    """
    import sys
    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    sys.argv = ["clipcrop"] + sys.argv[2:]
    from clipcrop_plugin.cli.main import cli
    cli()
    """
)


def _run_without(blocked: list[str], *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CLIPCROP_DATA_DIR=str(tmp_path / "data"), CLIPCROP_CONFIG=str(tmp_path / "none.toml"),
               CLIPCROP_MODEL_DIR=str(tmp_path / "models"))
    return subprocess.run([sys.executable, "-c", _RUNNER, ",".join(blocked), *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "p.jpg"
    Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(path)
    return path


def test_heuristic_suggest_scan_and_xmp_need_no_torch(tmp_path: Path, photo: Path) -> None:
    blocked = ["torch", "torchvision", "open_clip", "safetensors", "scipy", "fastapi", "uvicorn"]
    out = _run_without(blocked, "suggest", str(photo), "--aspect", "1:1", "--json", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    assert '"scorer": "heuristic"' in out.stdout
    db = tmp_path / "lib.sqlite3"
    out = _run_without(blocked, "scan", str(photo.parent), "--db", str(db), tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    out = _run_without(blocked, "query", "--db", str(db), "--json", tmp_path=tmp_path)
    assert out.returncode == 0 and str(photo) in out.stdout, out.stderr


def test_serve_without_its_extra_is_one_line(tmp_path: Path) -> None:
    out = _run_without(["fastapi", "uvicorn"], "serve", "--db", str(tmp_path / "x.sqlite3"), tmp_path=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: clipcrop serve needs the 'serve' extra: pip install 'clipcrop[serve]'"


def test_clip_scorer_without_torch_names_the_extra(tmp_path: Path, photo: Path) -> None:
    # Weights are present, so only the missing torch stands between the user and the scorer.
    models = tmp_path / "models"
    models.mkdir()
    (models / "RN50-openai.safetensors").write_bytes(b"not read before torch is needed")
    out = _run_without(["torch", "torchvision", "open_clip"], "suggest", str(photo), "--scorer", "zeroshot",
                       tmp_path=tmp_path)
    assert out.returncode != 0
    assert "needs the 'clip' extra: pip install 'clipcrop[clip]'" in out.stderr
    assert "Traceback" not in out.stderr


def test_require_extra_and_import_error_mapping() -> None:
    for extra in EXTRAS:
        assert isinstance(missing_modules(extra), list)
    require_extra("serve", "the server")  # installed in the test environment
    exc = ModuleNotFoundError("No module named 'open_clip'", name="open_clip")
    assert extra_for_import_error(exc) == "clip"
    assert extra_for_import_error(ModuleNotFoundError("x", name="nothing_we_know")) is None
    assert str(MissingExtraError("X", "raw")) == "X needs the 'raw' extra: pip install 'clipcrop[raw]'"
