"""``clipcrop xmp write|clear|show`` end to end: real files, the real pipeline, a real database."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from support.xmp import exiftool_json, sha256

from clipcrop_plugin.cli.main import cli


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "lib"
    (folder / "sub").mkdir(parents=True)
    for i, (w, h) in enumerate([(480, 320), (320, 480)]):
        im = Image.new("RGB", (w, h), (100, 110, 120))
        im.paste((230, 40, 40), (w // 2, h // 4, w // 2 + 60, h // 4 + 60))
        im.save(folder / f"p{i}.jpg", "JPEG", quality=90)
    Image.new("RGB", (300, 200), (5, 200, 5)).save(folder / "sub" / "g.png")
    return folder


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_help_has_examples() -> None:
    for args in (["xmp", "--help"], ["xmp", "write", "--help"], ["xmp", "clear", "--help"], ["xmp", "show", "--help"]):
        code, out, _ = run(*args)
        assert code == 0 and "Example" in out


def test_write_show_clear_folder(photos: Path, exiftool: str) -> None:
    before = {p: sha256(p) for p in photos.rglob("*") if p.is_file()}
    code, out, err = run("xmp", "write", str(photos), "--scorer", "heuristic", "--aspect", "4:5", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and all(r["ok"] and r["mode"] == "sidecar" for r in lines)
    assert {p: sha256(p) for p in before} == before
    sidecars = sorted(photos.rglob("*.xmp"))
    assert sorted(p.name for p in sidecars) == ["g.xmp", "p0.xmp", "p1.xmp"]  # IMG.xmp: what hosts apply
    tags = exiftool_json(exiftool, "-XMP-crs:all", "-XMP-clipcrop:Aspect", *sidecars)
    assert all(t["HasCrop"] is True and t["Aspect"] == "4:5" for t in tags)

    code, out, _ = run("xmp", "show", str(photos / "p0.jpg"), "--json")
    assert code == 0 and json.loads(out)["clipcrop"]["Aspect"] == "4:5"

    code, out, err = run("xmp", "clear", str(photos))
    assert code == 0, err
    assert not list(photos.rglob("*.xmp"))
    assert {p: sha256(p) for p in before} == before


def test_embed_and_clear_restores_bytes(photos: Path) -> None:
    photo = photos / "p0.jpg"
    original = photo.read_bytes()
    code, out, err = run("xmp", "write", str(photo), "--embed", "--scorer", "heuristic")
    assert code == 0, err
    assert "(embed," in out and photo.read_bytes() != original
    code, _, err = run("xmp", "clear", str(photo), "--only", "embed")
    assert code == 0, err
    assert photo.read_bytes() == original


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    code, _, err = run("xmp", "write", str(tmp_path / "missing.jpg"), "--scorer", "heuristic")
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 nope")
    code, _, err = run("xmp", "write", str(broken), "--scorer", "heuristic")
    assert code == 1 and "Traceback" not in err and broken.read_bytes() == b"\xff\xd8\xff\xe0 nope"
    code, _, err = run("xmp", "write")
    assert code == 2 and "error:" in err
    hostile = tmp_path / "ok.jpg"
    Image.new("RGB", (300, 200)).save(hostile)
    (tmp_path / "ok.xmp").write_text('<!DOCTYPE x [<!ENTITY a "b">]><x/>')
    code, _, err = run("xmp", "write", str(hostile), "--scorer", "heuristic")
    assert code == 1 and "refused" in err and len(err.strip().splitlines()) == 2  # the error + the summary


def test_stored_scores_are_used_without_rescoring(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_mod = pytest.importorskip("clipcrop_plugin.store")
    scan_mod = pytest.importorskip("clipcrop_plugin.scan")
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.scoring.registry import load_scorer

    db = tmp_path / "crops.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{db}")
    scorer = load_scorer("heuristic", settings=Settings(), device="cpu", weights=None)
    with store_mod.Store.open(f"sqlite:///{db}") as store:
        scan_mod.scan_paths(store, [photos / "p0.jpg", photos / "p1.jpg"], scorer)
        stored_best = store.photo_detail(str((photos / "p1.jpg").resolve())).photo.crop
    code, out, err = run("xmp", "write", str(photos / "p1.jpg"), "--source", "db")
    assert code == 0, err
    assert "stored scores" in out
    data = json.loads(run("xmp", "show", str(photos / "p1.jpg"), "--json")[1])
    assert data["box"] == list(stored_best.box)

    # --query selects from the database; a photo that is not in it is an error with --source db
    code, out, err = run("xmp", "write", "--query", "--embed", "--json")
    assert code == 0, err
    assert sorted(Path(json.loads(line)["path"]).name for line in out.splitlines()) == ["p0.jpg", "p1.jpg"]
    # the embedded photos' new bytes were filed in the database: stored scores still apply
    code, out, err = run("xmp", "write", str(photos / "p0.jpg"), "--source", "db")
    assert code == 0 and "stored scores" in out, err
    code, _, err = run("xmp", "write", str(photos / "sub" / "g.png"), "--source", "db")
    assert code == 1 and "no current scores" in err
    # a changed photo is scored again instead of getting stale scores
    shutil.copy(photos / "p0.jpg", photos / "p1.jpg")
    code, out, err = run("xmp", "write", str(photos / "p1.jpg"), "--scorer", "heuristic")
    assert code == 0 and "scored now" in out, err


def test_write_sweeps_stale_temp_files(photos: Path) -> None:
    import os
    import time

    stale = photos / ".p0.jpg.clipcrop-tmp-deadbeef"
    fresh = photos / ".p1.jpg.clipcrop-tmp-0badf00d"
    stale.write_bytes(b"half a jpeg")
    fresh.write_bytes(b"another writer is busy with this one")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    code, _, err = run("xmp", "write", str(photos / "p0.jpg"), "--scorer", "heuristic")
    assert code == 0, err
    assert not stale.exists() and fresh.exists()


def test_write_and_clear_fire_the_metadata_written_hook(photos: Path) -> None:
    """A host plugin hears about CLI writes and clears, as it does about the facade's."""
    from clipcrop_plugin.hooks import get_plugin_manager, hookimpl

    seen: list[tuple[str, bool, list[str]]] = []

    class Recorder:
        @hookimpl
        def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
            seen.append((Path(photo_path).name, cleared, [Path(w).name for w in written]))

    pm = get_plugin_manager()
    plugin = Recorder()
    pm.register(plugin)
    try:
        one = sorted(p for p in photos.iterdir() if p.suffix == ".jpg")[0]
        run("xmp", "write", str(one), "--scorer", "heuristic")
        run("xmp", "clear", str(one))
    finally:
        pm.unregister(plugin)
    side = one.with_suffix(".xmp").name
    assert seen == [(one.name, False, [side]), (one.name, True, [side])]
