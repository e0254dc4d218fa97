"""The database commands through click's CliRunner against a real SQLite file."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path

import piexif
import pytest
from click.testing import CliRunner
from PIL import Image
from support.store import database_at_revision, make_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.store import Store


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def make_rotated_jpeg(path: Path) -> Path:
    """A 240x160 stored JPEG tagged Orientation 6 (displayed 160x240), with a thumbnail and camera tags."""
    make_photo(path, seed=7, size=(240, 160))
    thumb = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(thumb, "JPEG")
    exif = {
        "0th": {piexif.ImageIFD.Orientation: 6, piexif.ImageIFD.Make: b"Canon", piexif.ImageIFD.Model: b"EOS 5D"},
        "Exif": {piexif.ExifIFD.DateTimeOriginal: b"2021:06:01 10:00:00", piexif.ExifIFD.PixelXDimension: 240,
                 piexif.ExifIFD.PixelYDimension: 160},
        "1st": {piexif.ImageIFD.JPEGInterchangeFormat: 0, piexif.ImageIFD.JPEGInterchangeFormatLength: 0},
        "thumbnail": thumb.getvalue(),
    }
    piexif.insert(piexif.dump(exif), str(path))
    return path


@pytest.fixture
def env(tmp_path: Path):  # type: ignore[no-untyped-def]
    lib = tmp_path / "lib"
    for i in range(4):
        make_photo(lib / f"p{i}.jpg", seed=i)
    make_rotated_jpeg(lib / "rot.jpg")
    db = tmp_path / "cli.sqlite3"
    runner = CliRunner()

    def run(*args: str, code: int | None = 0):  # type: ignore[no-untyped-def]
        res = runner.invoke(cli, [args[0], *args[1:], "--db", str(db)] if args[0] != "db" else list(args) + ["--db", str(db)])
        if code is not None:
            assert res.exit_code == code, (res.output, res.stderr, res.exception)
        assert "Traceback" not in res.output + res.stderr
        return res

    return lib, db, run


def test_every_command_has_help_with_an_example() -> None:
    runner = CliRunner()
    for cmd in (["scan"], ["query"], ["show"], ["label"], ["export"], ["db"], ["db", "upgrade"], ["db", "current"]):
        res = runner.invoke(cli, [*cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output, cmd


def test_scan_then_query_show_label(env) -> None:  # type: ignore[no-untyped-def]
    lib, db, run = env
    res = run("scan", str(lib), "--aspect", "1:1", "--scorer", "heuristic")
    assert "5/5 photos: 5 scored" in res.stdout
    assert "scanning" not in res.stderr  # the progress bar is for terminals; pipes get the summary only
    res = run("scan", str(lib), "--aspect", "1:1", "--scorer", "heuristic")
    assert "0 scored, 5 unchanged" in res.stdout

    table = run("query").stdout.splitlines()
    assert table[0].split()[:3] == ["id", "improve", "score"] and len(table) == 6
    rows = [json.loads(line) for line in run("query", "--json", "--aspect", "1:1").stdout.splitlines()]
    assert len(rows) == 5 and all(r["crop"]["aspect"] == "1:1" for r in rows)
    imps = [r["crop"]["improvement"] for r in rows]
    assert imps == sorted(imps, reverse=True)
    csv_rows = list(csv.DictReader(io.StringIO(run("query", "--csv", "--sort", "path", "--limit", "2").stdout)))
    assert [Path(r["path"]).name for r in csv_rows] == ["p0.jpg", "p1.jpg"]
    cam = [json.loads(x) for x in run("query", "--json", "--camera", "EOS", "--sort", "path").stdout.splitlines()]
    assert [Path(r["path"]).name for r in cam] == ["rot.jpg"] and cam[0]["taken_at"].startswith("2021-06-01")
    assert cam[0]["width"] == 160 and cam[0]["height"] == 240  # upright size
    assert run("query", "--enhances", "nonsense", code=2).stderr.startswith("error: unknown element")
    assert run("query", "--json", "--csv", code=2).stderr.startswith("error:")

    out = run("show", str(lib / "rot.jpg")).stdout
    assert "160x240 upright, EXIF orientation 6" in out and "best per candidate set:" in out and "1:1" in out
    detail = json.loads(run("show", str(lib / "rot.jpg"), "--json").stdout)
    assert set(detail["best"]) == {"grid", "1:1"} and len(detail["candidates"]) > 50
    preview = lib.parent / "prev.jpg"
    run("show", str(lib / "rot.jpg"), "--preview", str(preview))
    with Image.open(preview) as im:
        assert im.width > 160 + 300  # the photo plus the chart panel beside it
    assert run("show", str(lib / "nothere.jpg"), code=1).stderr.startswith("error: ")

    photo = str(lib / "p1.jpg")
    assert "accept" in run("label", photo, "--accept").stdout
    run("label", photo, "--reject", "2", "--aspect", "1:1")
    run("label", photo, "--box", "10,10,100,100")
    run("label", photo, "--prefer", "2", "--over", "1")
    run("label", photo, "--prefer", "0,0,120,120", "--over", "1")
    assert run("label", photo, "--box", "10,10,5000,100", code=2).stderr.startswith("error: box")
    assert run("label", photo, "--accept", "--reject", code=2).stderr.startswith("error: give exactly one")
    assert run("label", photo, "--prefer", "1", code=2).stderr.startswith("error:")
    with Store.open(str(db)) as store:
        kinds = [lab.kind for lab in store.labels()]
    assert kinds == ["accept", "reject", "box", "prefer", "prefer"]
    lab = [json.loads(x) for x in run("query", "--json", "--labelled").stdout.splitlines()]
    assert [Path(r["path"]).name for r in lab] == ["p1.jpg"]


def test_scan_exit_status_counts_failures(env) -> None:  # type: ignore[no-untyped-def]
    lib, _db, run = env
    (lib / "zero.jpg").write_bytes(b"")
    res = run("scan", str(lib), "--scorer", "heuristic", code=1)
    assert "1 failed" in res.stdout and "zero.jpg" in res.stderr
    run("query", "--status", "failed", "--sort", "path")


def test_export_keeps_exif_resets_orientation_and_never_overwrites(env, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    lib, db, run = env
    run("scan", str(lib), "--aspect", "1:1", "--scorer", "heuristic")
    original = lib / "rot.jpg"
    before = sha(original)
    out = lib.parent / "out"
    res = run("export", str(original), "--out", str(out), "--aspect", "1:1")
    [made] = list(out.iterdir())
    assert made.name == "rot.crop-1x1.jpg" and str(made) in res.stdout
    with Store.open(str(db)) as store:
        box = store.photo_detail(str(original)).best["1:1"].box
    with Image.open(made) as im:
        assert im.size == (box[2] - box[0], box[3] - box[1])
        size = im.size
    exif = piexif.load(str(made))
    assert exif["0th"][piexif.ImageIFD.Orientation] == 1
    assert exif["0th"][piexif.ImageIFD.Model] == b"EOS 5D"
    assert exif["Exif"][piexif.ExifIFD.DateTimeOriginal] == b"2021:06:01 10:00:00"
    assert (exif["Exif"][piexif.ExifIFD.PixelXDimension], exif["Exif"][piexif.ExifIFD.PixelYDimension]) == size
    assert exif["thumbnail"] is None and not exif["1st"]
    assert sha(original) == before

    made_bytes = made.read_bytes()
    run("export", str(original), "--out", str(out), "--aspect", "1:1")
    assert sorted(p.name for p in out.iterdir()) == ["rot.crop-1x1-2.jpg", "rot.crop-1x1.jpg"]
    assert made.read_bytes() == made_bytes

    res = run("export", "--query", "--aspect", "1:1", "--max-size", "64", "--out", str(out / "small"))
    files = list((out / "small").iterdir())
    assert len(files) == 5
    for f in files:
        with Image.open(f) as im:
            assert max(im.size) <= 64
    assert run("export", str(original), "--out", str(out), "--aspect", "16:9", code=1).stderr.startswith("error:")
    assert run("export", "--out", str(out), code=2).stderr.startswith("error:")

    # EXIF piexif cannot re-encode: the copy is written without it, with a note
    def broken_dump(_exif):  # type: ignore[no-untyped-def]
        raise ValueError("odd tag")

    monkeypatch.setattr("clipcrop_plugin.export.piexif.dump", broken_dump)
    res = run("export", str(original), "--out", str(out / "noexif"))
    [plain] = list((out / "noexif").iterdir())
    assert "EXIF not copied" in res.stderr
    with Image.open(plain) as im:
        assert not im.info.get("exif")
    assert sha(original) == before


def test_db_commands_and_bad_databases(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _lib, db, run = env
    assert "revision none" in run("db", "current").stdout
    assert not db.exists()  # current creates nothing
    from clipcrop_plugin.store.migrate import head_revision

    head = head_revision()  # the newest revision, whichever branch added it
    assert f"upgraded empty -> {head}" in run("db", "upgrade").stdout
    assert f"{head} (head)" in run("db", "upgrade").stdout
    assert "up to date" in run("db", "current").stdout
    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num='0001'")
    con.commit()
    con.close()
    assert "needs `clipcrop db upgrade`" in run("db", "current").stdout
    # (0001 stamp over a 0002 schema would fail to re-create tables: use a real old database instead)
    old = database_at_revision(tmp_path / "old.sqlite3", "0001")
    res = CliRunner().invoke(cli, ["db", "upgrade", "--db", str(old)])
    assert res.exit_code == 0 and f"upgraded 0001 -> {head}" in res.stdout and "backup" in res.stdout
    assert list(tmp_path.glob("old.sqlite3.0001.*.bak"))

    junk = tmp_path / "junk.sqlite3"
    junk.write_text("hello")
    for args in (["query"], ["db", "current"], ["db", "upgrade"], ["scan", str(tmp_path), "--scorer", "heuristic"]):
        res = CliRunner().invoke(cli, [*args, "--db", str(junk)])
        assert res.exit_code == 1 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, args
    assert junk.read_text() == "hello"

    con = sqlite3.connect(db)
    con.execute("UPDATE alembic_version SET version_num='0999'")
    con.commit()
    con.close()
    res = run("query", code=1)
    assert "newer than this clipcrop" in res.stderr


def test_scan_writes_xmp_sidecars_when_asked(env) -> None:  # type: ignore[no-untyped-def]
    lib, _db, run = env
    run("scan", str(lib), "--scorer", "heuristic")
    assert not list(lib.glob("*.xmp"))
    make_photo(lib / "new.jpg", seed=42)
    before = sha(lib / "new.jpg")
    # Always write the crop (the free grid may say "keep as is" and write none; see test_keep.py).
    Path(os.environ["CLIPCROP_CONFIG"]).write_text("keep_margin = -inf\n", encoding="utf-8")
    run("scan", str(lib), "--scorer", "heuristic", "--xmp")
    sidecar = lib / "new.xmp"
    assert [p.name for p in lib.glob("*.xmp")] == ["new.xmp"]  # only the newly scored photo
    assert b"CropLeft" in sidecar.read_bytes()
    assert sha(lib / "new.jpg") == before


def test_clipcrop_db_environment_variable(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    lib, _db, _run = env
    target = tmp_path / "from-env.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", str(target))
    res = CliRunner().invoke(cli, ["scan", str(lib / "p0.jpg"), "--scorer", "heuristic"])
    assert res.exit_code == 0, res.output
    with Store.open(f"sqlite:///{target}") as store:
        assert store.status_counts() == {"scored": 1}


def test_scan_ctrl_c_exits_130_and_the_next_scan_finishes(env, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    lib, db, run = env
    import clipcrop_plugin.scan as scan_mod

    real = scan_mod.suggest_paths
    calls = {"n": 0}

    def interrupted(*a, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # Ctrl-C while the second batch is being scored
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(scan_mod, "suggest_paths", interrupted)
    # One process: the interruption is injected into this process's scoring (workers have their own).
    res = run("scan", str(lib), "--scorer", "heuristic", "--batch-size", "2", "--workers", "1", code=130)
    assert "interrupted" in res.stdout
    with Store.open(str(db)) as store:
        assert store.status_counts() == {"scored": 2}
    monkeypatch.setattr(scan_mod, "suggest_paths", real)
    res = run("scan", str(lib), "--scorer", "heuristic", "--batch-size", "2")
    assert "3 scored, 2 unchanged" in res.stdout


def test_label_command_fires_the_label_recorded_hook(env) -> None:  # type: ignore[no-untyped-def]
    """The CLI goes through the host facade, so a plugin's label_recorded hook sees CLI labels."""
    from clipcrop_plugin.hooks import get_plugin_manager, hookimpl

    seen: list[tuple[str, str]] = []

    class Recorder:
        @hookimpl
        def label_recorded(self, photo_path: str, label: dict) -> None:
            seen.append((photo_path, label["kind"]))

    lib, _db, run = env
    run("scan", str(lib), "--scorer", "heuristic")
    pm = get_plugin_manager()
    plugin = Recorder()
    pm.register(plugin)
    try:
        run("label", str(lib / "p1.jpg"), "--reject")
    finally:
        pm.unregister(plugin)
    assert seen == [(str(lib / "p1.jpg"), "reject")]


def test_scan_command_fires_photo_scored_for_each_new_photo(env) -> None:  # type: ignore[no-untyped-def]
    from clipcrop_plugin.hooks import get_plugin_manager, hookimpl

    seen: list[tuple[str, bool]] = []

    class Recorder:
        @hookimpl
        def photo_scored(self, photo_path: str, suggestion) -> None:  # type: ignore[no-untyped-def]
            seen.append((photo_path, suggestion.ok))

    lib, _db, run = env
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    pm = get_plugin_manager()
    plugin = Recorder()
    pm.register(plugin)
    try:
        run("scan", str(lib), "--scorer", "heuristic", code=1)
        run("scan", str(lib), "--scorer", "heuristic", code=1)  # nothing new: no second round of hooks
    finally:
        pm.unregister(plugin)
    assert sorted(p.rsplit("/", 1)[-1] for p, ok in seen if ok) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "rot.jpg"]
    # scan retries failures (a decoder may have been installed since), so the broken file is reported twice
    assert [p.rsplit("/", 1)[-1] for p, ok in seen if not ok] == ["broken.jpg", "broken.jpg"]
