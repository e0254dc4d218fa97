"""RAW in the photographer's workflow: RAW + JPEG pairs (scan, store, query, sidecars), export of a
cropped JPEG developed from the RAW, review-page thumbnails, xmp write from stored scores, the daemon."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import piexif
import pytest
from click.testing import CliRunner
from PIL import Image
from support.raw import correlation, make_dng, source_photo, stored_rgb, upright

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.store import QueryFilters, Store

pytest.importorskip("rawpy", reason="the [raw] extra (rawpy) decodes camera RAW")


def camera_jpeg(path: Path, orientation: int, size: tuple[int, int] = (1280, 852)) -> Path:
    """The JPEG a camera writes beside its RAW: the stored frame, with an EXIF Orientation tag."""
    im = Image.fromarray((stored_rgb(size) * 255).astype(np.uint8))
    exif = piexif.dump({"0th": {piexif.ImageIFD.Orientation: orientation, piexif.ImageIFD.Make: b"clipcrop"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=88, exif=exif)
    return path


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    """A card's folder: IMG_0001.dng + IMG_0001.JPG (one shot), and a lone IMG_0002.jpg."""
    folder = tmp_path / "DCIM"
    make_dng(folder / "IMG_0001.dng", 6, preview=(640, 426))
    camera_jpeg(folder / "IMG_0001.JPG", 6)
    camera_jpeg(folder / "IMG_0002.jpg", 1, size=(640, 426))
    return folder


def _run(*args: str) -> object:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_pair_is_recorded_and_query_shows_one_row_per_shot(shoot: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    _run("scan", str(shoot), "--scorer", "heuristic", "--db", db)
    with Store.open(db) as store:
        rows = {Path(p.path).name: p for p in store.query(QueryFilters(all_files=True), sort="path", limit=None)}
        assert set(rows) == {"IMG_0001.dng", "IMG_0001.JPG", "IMG_0002.jpg"}
        assert rows["IMG_0001.dng"].pair_path == str(shoot / "IMG_0001.JPG") and rows["IMG_0001.dng"].pair_role == "raw"
        assert rows["IMG_0001.JPG"].pair_role == "companion"
        assert rows["IMG_0002.jpg"].pair_path is None
        assert [Path(p.path).name for p in store.query(sort="path")] == ["IMG_0001.dng", "IMG_0002.jpg"]
        assert store.count() == 2 and store.count(QueryFilters(all_files=True)) == 3
        # Both files of the shot were scored in the same upright frame.
        assert (rows["IMG_0001.dng"].width, rows["IMG_0001.dng"].height) == (852, 1280)
        assert (rows["IMG_0001.JPG"].width, rows["IMG_0001.JPG"].height) == (852, 1280)
    con = sqlite3.connect(tmp_path / "lib.sqlite3")
    pairs = dict(con.execute("select path, pair_role from photos where pair_id is not null").fetchall())
    con.close()
    assert pairs == {str(shoot / "IMG_0001.dng"): "raw", str(shoot / "IMG_0001.JPG"): "companion"}

    out = _run("query", "--db", db, "--json", "--sort", "path").stdout  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in lines] == ["IMG_0001.dng", "IMG_0002.jpg"]
    assert lines[0]["pair"] == {"path": str(shoot / "IMG_0001.JPG"), "role": "raw"}
    every = _run("query", "--db", db, "--json", "--all-files").stdout  # type: ignore[attr-defined]
    assert len(every.splitlines()) == 3
    table = _run("query", "--db", db, "--sort", "path").output  # type: ignore[attr-defined]
    assert "IMG_0001.dng (+IMG_0001.JPG)" in table


def test_companion_shows_while_its_raw_is_not_scored(shoot: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    (shoot / "IMG_0001.dng").write_bytes((shoot / "IMG_0001.dng").read_bytes()[:5000])  # a truncated RAW
    result = CliRunner().invoke(cli, ["scan", str(shoot), "--scorer", "heuristic", "--db", db])
    assert "truncated or corrupt RAW data" in result.output
    with Store.open(db) as store:
        names = {Path(p.path).name: p.status for p in store.query(sort="path", limit=None)}
    # The failed RAW says why; the JPEG of the shot still offers its crop.
    assert names == {"IMG_0001.dng": "failed", "IMG_0001.JPG": "scored", "IMG_0002.jpg": "scored"}


@pytest.mark.parametrize("order", ["raw-first", "jpeg-first"])
def test_the_raws_crop_goes_into_its_sidecar_and_the_jpeg_never_overwrites_it(shoot: Path, order: str) -> None:
    from clipcrop_plugin.xmp.packet import parse_packet, read_crop

    raw, jpeg = shoot / "IMG_0001.dng", shoot / "IMG_0001.JPG"
    for photo in ([raw, jpeg] if order == "raw-first" else [jpeg, raw]):
        _run("xmp", "write", str(photo), "--scorer", "heuristic", "--naming", "base")
    data = read_crop(parse_packet((shoot / "IMG_0001.xmp").read_bytes()))
    assert data["clipcrop"]["Source"] == "IMG_0001.dng"
    assert data["tiff"]["Orientation"] == "6" and data["tiff"]["ImageWidth"] == "1280"
    jpeg_side = read_crop(parse_packet((shoot / "IMG_0001.JPG.xmp").read_bytes()))
    assert jpeg_side["clipcrop"]["Source"] == "IMG_0001.JPG"


def test_xmp_write_from_stored_scores_reads_the_raw_header(shoot: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    _run("scan", str(shoot), "--scorer", "heuristic", "--db", db)
    res = CliRunner().invoke(cli, ["xmp", "write", str(shoot / "IMG_0001.dng"), "--naming", "base", "--source", "db",
                                   "--json"], env={"CLIPCROP_DB": db})
    assert res.exit_code == 0, res.output
    line = json.loads(res.output.splitlines()[0])
    assert line["scores"] == "db" and line["written"].endswith("IMG_0001.xmp")


def test_export_develops_the_raw_keeps_exif_and_resets_orientation(shoot: Path, tmp_path: Path) -> None:
    from clipcrop_plugin.export import export_crop

    box = (100, 300, 700, 1100)  # upright pixels of the 852x1280 frame
    res = export_crop(shoot / "IMG_0001.dng", box, tmp_path / "out", expect_size=(852, 1280))
    assert res.path.suffix == ".jpg" and (res.width, res.height) == (600, 800) and res.exif_note is None
    with Image.open(res.path) as im:
        assert im.format == "JPEG" and im.size == (600, 800)
        exif = piexif.load(im.info["exif"])
        copy = im.convert("RGB")
    assert exif["0th"][piexif.ImageIFD.Orientation] == 1
    assert exif["0th"][piexif.ImageIFD.Make] == b"clipcrop" and exif["0th"][piexif.ImageIFD.Model] == b"Test DNG"
    assert exif["Exif"][piexif.ExifIFD.PixelXDimension] == 600
    assert piexif.ImageIFD.StripOffsets not in exif["0th"]  # the sensor data's tags stay behind
    # The copy shows the box of the upright photo.
    assert correlation(copy, upright(source_photo().resize((1280, 852)), 6).crop(box)) > 0.9


def test_export_from_store_for_a_raw(shoot: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    _run("scan", str(shoot), "--scorer", "heuristic", "--db", db)
    out = _run("export", str(shoot / "IMG_0001.dng"), "--out", str(tmp_path / "crops"), "--db", db).output  # type: ignore[attr-defined]
    [made] = list((tmp_path / "crops").glob("IMG_0001.crop-*.jpg"))
    assert str(made) in out
    with Store.open(db) as store:
        box = store.best_crop(str(shoot / "IMG_0001.dng")).box  # type: ignore[union-attr]
    with Image.open(made) as im:
        assert im.size == (box[2] - box[0], box[3] - box[1])


def test_thumbnail_of_a_raw_is_upright_from_its_preview(shoot: Path, tmp_path: Path) -> None:
    from clipcrop_plugin.server.thumbs import ThumbnailCache

    cache = ThumbnailCache(tmp_path / "thumbs")
    data = cache.read(shoot / "IMG_0001.dng", "ab" * 32, 256)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and max(im.size) == 256 and im.width < im.height
        assert correlation(im, upright(source_photo(), 6)) > 0.9


def test_daemon_scores_a_raw_and_its_jpeg_and_pairs_them(shoot: Path, tmp_path: Path) -> None:
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.daemon.service import WatchService

    settings = Settings(db_url=f"sqlite:///{tmp_path / 'd.sqlite3'}", scorer="heuristic", stable_seconds=0.25,
                        rescan_seconds=600.0, batch_size=8)
    state = WatchService([shoot], settings, status_file=tmp_path / "s.json").run_once(timeout=120)
    assert state["done"] == 3, state
    con = sqlite3.connect(tmp_path / "d.sqlite3")
    rows = dict(con.execute("select path, coalesce(pair_role, '') || ':' || status from photos").fetchall())
    con.close()
    assert rows[str(shoot / "IMG_0001.dng")] == "raw:scored"
    assert rows[str(shoot / "IMG_0001.JPG")] == "companion:scored"


def test_review_api_lists_one_row_per_shot_and_serves_the_raws_thumbnail(shoot: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the [serve] extra runs the review page")
    from fastapi.testclient import TestClient
    from support.server import BASE

    from clipcrop_plugin.api import Library
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.hooks import make_plugin_manager
    from clipcrop_plugin.server import create_app

    lib = Library.open(f"sqlite:///{tmp_path / 'r.sqlite3'}", settings=Settings(), scorer="heuristic",
                       plugins=make_plugin_manager(False))
    try:
        for photo in sorted(shoot.iterdir()):
            assert lib.suggest(photo).ok
        client = TestClient(create_app(lib, thumbnail_dir=tmp_path / "thumbs"), base_url=BASE)
        page = client.get("/api/photos", params={"sort": "path"}).json()
        assert [p["name"] for p in page["items"]] == ["IMG_0001.dng", "IMG_0002.jpg"] and page["total"] == 2
        raw = page["items"][0]
        assert (raw["width"], raw["height"]) == (852, 1280)
        thumb = client.get(f"/api/photos/{raw['id']}/thumbnail", params={"size": 256})
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as im:
            assert im.size == (170, 256)
            assert correlation(im, upright(source_photo(), 6)) > 0.9
    finally:
        lib.close()
