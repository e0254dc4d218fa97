"""Crops real hosts apply: sidecar naming and host profiles, values other hosts own, an XMP-only
rotation, sidecars that follow renamed, moved and deleted photos, and what exiv2/exiftool/Pillow read."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from support.xmp import TO_STORED, exiftool_json, make_suggestion, oriented_jpeg, sha256, transpose

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.config import Settings
from clipcrop_plugin.errors import ConfigError
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.xmp import clear_crop_metadata, read_crop_metadata, stored_to_upright, write_crop_metadata
from clipcrop_plugin.xmp.follow import follow_photo_move, forget_photo

DARKTABLE_OWN = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/" xmp:Rating="3" darktable:xmp_version="5"/>
 </rdf:RDF>
</x:xmpmeta>
"""

ADOBE_BAKED = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/" crs:AlreadyApplied="True" crs:Exposure2012="+0.50"
    crs:Version="15.0" xmp:Rating="5"/>
 </rdf:RDF>
</x:xmpmeta>
"""

TURNED_BY_HOST = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>
 </rdf:RDF>
</x:xmpmeta>
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def photo(path: Path, size: tuple[int, int] = (480, 320)) -> Path:
    im = Image.new("RGB", size, (90, 120, 150))
    im.paste((230, 40, 40), (size[0] // 2, size[1] // 4, size[0] // 2 + 60, size[1] // 4 + 60))
    im.save(path)
    return path


# ---------------------------------------------------------------- naming and host profiles

def test_default_sidecar_is_img_xmp_and_ext_naming_on_request(tmp_path: Path) -> None:
    p = photo(tmp_path / "IMG_1.JPG")
    assert write_crop_metadata(p, make_suggestion(p)).path_written == tmp_path / "IMG_1.xmp"
    assert write_crop_metadata(p, make_suggestion(p), naming="ext").path_written == tmp_path / "IMG_1.JPG.xmp"
    assert read_crop_metadata(p)["file"] == str(tmp_path / "IMG_1.xmp")  # the one hosts apply, first
    assert sorted(x.name for x in clear_crop_metadata(p)) == ["IMG_1.JPG.xmp", "IMG_1.xmp"]
    assert not list(tmp_path.glob("*.xmp"))


def test_raw_sibling_clash_is_reported_not_overwritten(tmp_path: Path) -> None:
    raw = tmp_path / "IMG_2.CR2"
    raw.write_bytes(b"raw bytes")
    raw_sidecar = tmp_path / "IMG_2.xmp"
    raw_sidecar.write_text(ADOBE_BAKED, encoding="utf-8")
    digest = sha256(raw_sidecar)
    jpg = photo(tmp_path / "IMG_2.JPG")
    code, out, err = run("xmp", "write", str(jpg), "--scorer", "heuristic")
    assert code == 0, err
    assert "IMG_2.JPG.xmp" in out and "note: IMG_2.xmp belongs to IMG_2.CR2" in out
    assert sha256(raw_sidecar) == digest and (tmp_path / "IMG_2.JPG.xmp").exists()


def test_host_profiles_choose_naming_and_mode(tmp_path: Path) -> None:
    assert (Settings().sidecar_naming, Settings().embed) == ("base", False)
    assert (Settings(host="darktable").sidecar_naming, Settings(host="darktable").embed) == ("base", False)
    assert (Settings(host="lightroom").sidecar_naming, Settings(host="lightroom").embed) == ("base", True)
    assert (Settings(host="digikam").sidecar_naming, Settings(host="digikam").embed) == ("ext", False)
    assert Settings(host="digikam", sidecar_naming="base").sidecar_naming == "base"  # an explicit key wins
    with pytest.raises(ConfigError, match="host must be one of"):
        Settings(host="picasa")
    with pytest.raises(ConfigError, match="sidecar_naming"):
        Settings(sidecar_naming="jpg")
    config = Path(os.environ["CLIPCROP_CONFIG"])
    config.write_text('host = "picasa"\n')
    code, _, err = run("xmp", "write", str(photo(tmp_path / "x.jpg")), "--scorer", "heuristic")
    assert code != 0 and "host must be one of" in err and "Traceback" not in err
    config.write_text('host = "lightroom"\n')
    jpg, png, tif = photo(tmp_path / "j.jpg"), photo(tmp_path / "p.png"), photo(tmp_path / "t.tif")
    code, out, err = run("xmp", "write", str(jpg), str(png), str(tif), "--scorer", "heuristic", "--json")
    assert code == 0, err
    modes = {Path(r["path"]).name: (r["mode"], Path(r["written"]).name) for r in map(json.loads, out.splitlines())}
    assert modes == {"j.jpg": ("embed", "j.jpg"), "p.png": ("embed", "p.png"), "t.tif": ("sidecar", "t.xmp")}
    config.write_text("")
    code, out, err = run("xmp", "write", str(photo(tmp_path / "dk.jpg")), "--host", "digikam", "--scorer", "heuristic")
    assert code == 0 and (tmp_path / "dk.jpg.xmp").exists(), err


def test_not_xmp_sidecar_of_another_program_is_never_overwritten(tmp_path: Path) -> None:
    p = photo(tmp_path / "n.jpg")
    other = tmp_path / "n.xmp"
    other.write_bytes(b"\x00\x01 some other program's binary file")
    code, _, err = run("xmp", "write", str(p), "--scorer", "heuristic")
    assert code == 1 and len(err.strip().splitlines()) == 2 and "n.xmp" in err  # one line + the summary
    assert other.read_bytes() == b"\x00\x01 some other program's binary file"


# ---------------------------------------------------------------- values other hosts own

@pytest.mark.parametrize("mode", ["sidecar", "embed"])
def test_already_applied_and_other_crs_settings_are_kept(tmp_path: Path, exiftool: str, mode: str) -> None:
    p = tmp_path / "baked.jpg"
    Image.new("RGB", (600, 400), (90, 120, 150)).save(p, "JPEG", **({"xmp": ADOBE_BAKED.encode()} if mode == "embed" else {}))
    if mode == "sidecar":
        (tmp_path / "baked.xmp").write_text(ADOBE_BAKED, encoding="utf-8")
    target = p if mode == "embed" else tmp_path / "baked.xmp"
    result = write_crop_metadata(p, make_suggestion(p), mode=mode)
    assert result.mode_used == mode and "AlreadyApplied is True" in (result.note or "")
    [tags] = exiftool_json(exiftool, "-XMP-crs:all", "-XMP-xmp:Rating", target)
    assert tags["AlreadyApplied"] is True and tags["Exposure2012"] == "+0.50" and tags["Rating"] == 5
    assert tags["HasCrop"] is True
    write_crop_metadata(p, make_suggestion(p, (0, 0, 300, 200)), mode=mode)  # a second write keeps it too
    [tags] = exiftool_json(exiftool, "-XMP-crs:all", target)
    assert tags["AlreadyApplied"] is True
    clear_crop_metadata(p)
    [tags] = exiftool_json(exiftool, "-XMP-crs:all", target)
    assert tags["AlreadyApplied"] is True and "HasCrop" not in tags


def test_xmp_only_orientation_is_kept_and_the_crop_is_scored_in_that_frame(tmp_path: Path, exiftool: str) -> None:
    p = photo(tmp_path / "turned.png", (480, 320))  # no EXIF at all; the host turns it by tiff:Orientation
    sidecar = tmp_path / "turned.xmp"
    sidecar.write_text(TURNED_BY_HOST, encoding="utf-8")
    code, out, err = run("xmp", "write", str(p), "--scorer", "heuristic", "--aspect", "4:5", "--json")
    assert code == 0, err
    [tags] = exiftool_json(exiftool, "-n", "-XMP-tiff:all", "-XMP-crs:all", "-XMP-clipcrop:all", sidecar)
    assert tags["Orientation"] == 6  # the host's rotation survived the write
    assert (tags["UprightWidth"], tags["UprightHeight"]) == (320, 480)  # scored on the turned, portrait frame
    x1, y1, x2, y2 = (int(v) for v in str(tags["Box"]).split(","))
    assert (x2 - x1) / (y2 - y1) == pytest.approx(4 / 5, abs=0.02)  # a 4:5 portrait crop of what the host shows
    upright = stored_to_upright((tags["CropLeft"], tags["CropTop"], tags["CropRight"], tags["CropBottom"]), 6)
    assert upright == pytest.approx((x1 / 320, y1 / 480, x2 / 320, y2 / 480), abs=1e-5)
    clear_crop_metadata(p)
    [tags] = exiftool_json(exiftool, "-n", "-XMP-tiff:all", "-XMP-crs:all", sidecar)
    assert tags.get("Orientation") == 6 and "HasCrop" not in tags


def test_write_of_a_suggestion_scored_in_another_frame_says_so(tmp_path: Path) -> None:
    p = photo(tmp_path / "t.png", (480, 320))
    (tmp_path / "t.xmp").write_text(TURNED_BY_HOST, encoding="utf-8")
    result = write_crop_metadata(p, make_suggestion(p))  # scored unturned, as the daemon would
    assert "tiff:Orientation=6" in result.note and "--source score" in result.note
    assert 'tiff:Orientation="6"' in (tmp_path / "t.xmp").read_text(encoding="utf-8")


def test_upright_size_has_its_own_names_and_old_names_are_read(tmp_path: Path) -> None:
    p = oriented_jpeg(tmp_path / "r.jpg", Image.new("RGB", (300, 200), (1, 2, 3)), 6)  # stored 200x300
    write_crop_metadata(p, make_suggestion(p), mode="embed")
    with Image.open(p) as im:
        flat = im.getxmp()["xmpmeta"]["RDF"]["Description"]  # a namespace-blind reader
    desc = flat if isinstance(flat, dict) else flat[-1]
    assert (desc["ImageWidth"], desc["ImageLength"]) == ("200", "300")  # tiff: the stored size, unshadowed
    assert (desc["UprightWidth"], desc["UprightHeight"]) == ("300", "200")
    old = tmp_path / "old.xmp"
    text = (write_crop_metadata(p, make_suggestion(p)).path_written.read_text(encoding="utf-8")
            .replace("clipcrop:UprightWidth", "clipcrop:ImageWidth").replace("clipcrop:UprightHeight", "clipcrop:ImageHeight"))
    old.write_text(text, encoding="utf-8")
    ours = read_crop_metadata(old)["clipcrop"]
    assert (ours["UprightWidth"], ours["UprightHeight"]) == ("300", "200") and "ImageWidth" not in ours


# ---------------------------------------------------------------- following our sidecars

def test_show_and_clear_find_our_sidecar_after_photo_and_sidecar_were_renamed(tmp_path: Path) -> None:
    p = photo(tmp_path / "IMG_5.jpg")
    write_crop_metadata(p, make_suggestion(p))
    p.rename(tmp_path / "Holiday 5.jpg")
    (tmp_path / "IMG_5.xmp").rename(tmp_path / "Holiday 5.xmp")
    code, out, err = run("xmp", "show", str(tmp_path / "Holiday 5.jpg"), "--json")
    assert code == 0 and json.loads(out)["clipcrop"]["Source"] == "IMG_5.jpg", err
    code, out, err = run("xmp", "clear", str(tmp_path / "Holiday 5.jpg"))
    assert code == 0 and "cleared" in out and not (tmp_path / "Holiday 5.xmp").exists(), err
    # a different photo taking the old name does not inherit a crop that is not its own
    q = photo(tmp_path / "IMG_6.jpg", (400, 300))
    write_crop_metadata(q, make_suggestion(q))
    (tmp_path / "IMG_6.xmp").rename(tmp_path / "other.xmp")
    photo(tmp_path / "other.jpg", (500, 300))
    assert read_crop_metadata(tmp_path / "other.jpg") is None
    assert clear_crop_metadata(tmp_path / "other.jpg") == [] and (tmp_path / "other.xmp").exists()


def test_follow_move_takes_an_only_ours_sidecar_along(tmp_path: Path) -> None:
    p = photo(tmp_path / "a.jpg")
    write_crop_metadata(p, make_suggestion(p))
    (tmp_path / "moved").mkdir()
    new = tmp_path / "moved" / "b.jpg"
    p.rename(new)
    changed = follow_photo_move(p, new)
    assert sorted(changed) == sorted([tmp_path / "moved" / "b.xmp", tmp_path / "a.xmp"])
    assert not (tmp_path / "a.xmp").exists()
    data = read_crop_metadata(new)
    assert data["file"] == str(tmp_path / "moved" / "b.xmp") and data["clipcrop"]["Source"] == "b.jpg"
    assert clear_crop_metadata(new) == [tmp_path / "moved" / "b.xmp"] and not list((tmp_path / "moved").glob("*.xmp"))


def test_follow_move_leaves_a_hosts_data_and_takes_only_ours(tmp_path: Path, exiftool: str) -> None:
    p = photo(tmp_path / "c.jpg")
    old = tmp_path / "c.jpg.xmp"
    old.write_text(DARKTABLE_OWN, encoding="utf-8")
    write_crop_metadata(p, make_suggestion(p), naming="ext")
    new = tmp_path / "d.jpg"
    p.rename(new)
    follow_photo_move(p, new)
    assert all_xmp(exiftool, old) == all_xmp_text(DARKTABLE_OWN, exiftool, tmp_path)  # only ours left it
    assert read_crop_metadata(new)["file"] == str(tmp_path / "d.jpg.xmp")
    # photo and sidecar renamed together by a host: the record catches up
    (tmp_path / "d.jpg.xmp").rename(tmp_path / "e.jpg.xmp")
    new.rename(tmp_path / "e.jpg")
    assert follow_photo_move(new, tmp_path / "e.jpg") == [tmp_path / "e.jpg.xmp"]
    assert read_crop_metadata(tmp_path / "e.jpg")["clipcrop"]["Source"] == "e.jpg"


def all_xmp(exiftool: str, path: Path) -> dict:
    [t] = exiftool_json(exiftool, "-XMP:all", path)
    t.pop("SourceFile")
    return t


def all_xmp_text(text: str, exiftool: str, folder: Path) -> dict:
    ref = folder / "reference.xmp"
    ref.write_text(text, encoding="utf-8")
    try:
        return all_xmp(exiftool, ref)
    finally:
        ref.unlink()


def test_forget_deletes_only_ours_and_strips_ours_from_shared(tmp_path: Path) -> None:
    a, b = photo(tmp_path / "f.jpg"), photo(tmp_path / "g.jpg")
    write_crop_metadata(a, make_suggestion(a))
    (tmp_path / "g.xmp").write_text(DARKTABLE_OWN, encoding="utf-8")
    write_crop_metadata(b, make_suggestion(b))
    broken = photo(tmp_path / "h.jpg")
    (tmp_path / "h.xmp").write_text("<x:xmpmeta", encoding="utf-8")
    assert forget_photo(a) == []  # still there: nothing is forgotten
    for x in (a, b, broken):
        x.unlink()
    assert forget_photo(a) == [tmp_path / "f.xmp"] and not (tmp_path / "f.xmp").exists()
    assert forget_photo(b) == [tmp_path / "g.xmp"]
    text = (tmp_path / "g.xmp").read_text(encoding="utf-8")
    assert "clipcrop" not in text and 'xmp:Rating="3"' in text
    assert forget_photo(broken) == [] and (tmp_path / "h.xmp").read_text(encoding="utf-8") == "<x:xmpmeta"


def test_daemon_moves_and_removes_our_sidecars(tmp_path: Path) -> None:
    from clipcrop_plugin.daemon.backend import StoreBackend
    from clipcrop_plugin.daemon.stability import file_signature
    from clipcrop_plugin.hashing import content_hash
    from clipcrop_plugin.jobs import MetadataPolicy
    from clipcrop_plugin.scan import scan_paths
    from clipcrop_plugin.scoring.registry import load_scorer
    from clipcrop_plugin.store import Store

    folder = tmp_path / "lib"
    folder.mkdir()
    p = photo(folder / "w.jpg")
    scorer = load_scorer("heuristic", settings=Settings(), device="cpu", weights=None)
    with Store.open(f"sqlite:///{tmp_path / 'd.sqlite3'}") as store:
        scan_paths(store, [p], scorer)
        backend = StoreBackend(store, scorer, [], policy=MetadataPolicy("sidecar", "base"))
        backend._ensure_metadata(str(p))
        assert (folder / "w.xmp").exists()
        new = folder / "renamed.jpg"
        p.rename(new)
        backend.relink(content_hash(new), str(new), file_signature(str(new)))
        assert not (folder / "w.xmp").exists()
        assert read_crop_metadata(new)["clipcrop"]["Source"] == "renamed.jpg"
        new.unlink()
        backend.mark_gone(str(new))
        assert not list(folder.glob("*.xmp"))


# ---------------------------------------------------------------- what other readers see

@pytest.mark.skipif(shutil.which("exiv2") is None, reason="exiv2 is not installed")
def test_exiv2_and_exiftool_read_every_packet_without_warnings(tmp_path: Path, exiftool: str) -> None:
    def exiv2(f: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["exiv2", "-px", "pr", str(f)], capture_output=True, text=True, timeout=60)

    files: list[Path] = []
    already: dict[Path, str] = {}  # what exiv2 says about a photo's own EXIF before we touch it
    for o in range(1, 9):
        jpg = oriented_jpeg(tmp_path / f"o{o}.jpg", Image.new("RGB", (300, 200), (9, 9, 9)), o)
        files.append(write_crop_metadata(jpg, make_suggestion(jpg)).path_written)  # sidecar
        emb = oriented_jpeg(tmp_path / f"e{o}.jpg", Image.new("RGB", (300, 200), (9, 9, 9)), o)
        already[emb] = exiv2(emb).stderr
        files.append(write_crop_metadata(emb, make_suggestion(emb), mode="embed").path_written)
    png = photo(tmp_path / "p.png")
    files.append(write_crop_metadata(png, make_suggestion(png), mode="embed").path_written)
    merged = tmp_path / "m.jpg"
    photo(merged)
    (tmp_path / "m.xmp").write_text(ADOBE_BAKED, encoding="utf-8")
    files.append(write_crop_metadata(merged, make_suggestion(merged)).path_written)
    for f in files:
        r = exiv2(f)
        assert r.returncode == 0 and r.stderr == already.get(f, ""), (f, r.stderr)
        assert "Xmp.crs.CropLeft" in r.stdout and "Xmp.clipcrop.UprightWidth" in r.stdout, f
    tags = exiftool_json(exiftool, "-a", "-warning", "-error", "-XMP-crs:HasCrop", *files)
    assert len(tags) == len(files)
    for t in tags:
        assert "Warning" not in t and "Error" not in t and t["HasCrop"] is True, t


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_oriented_tiff_is_turned_once_and_keeps_its_stored_size(tmp_path: Path, exiftool: str,
                                                                   orientation: int) -> None:
    """Pillow >= 11 reports and loads a TIFF already turned by its tag; intake and the writer must
    still see the stored frame (tiff:ImageWidth) and score the upright one."""
    rng = np.random.default_rng(3)
    upright = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).resize((300, 200), Image.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = orientation
    tif = tmp_path / f"t{orientation}.tif"
    transpose(upright, TO_STORED[orientation]).save(tif, exif=exif.tobytes())
    loaded = load_image(tif, min_side=200)
    stored = (200, 300) if orientation >= 5 else (300, 200)
    assert (loaded.info.stored_width, loaded.info.stored_height) == stored
    assert (loaded.info.width, loaded.info.height) == (300, 200) and loaded.info.orientation == orientation
    work = np.asarray(loaded.image.resize((300, 200), Image.NEAREST), dtype=np.int16)
    assert np.abs(work - np.asarray(upright, dtype=np.int16)).mean() < 2  # upright, turned exactly once
    sidecar = write_crop_metadata(tif, make_suggestion(tif, info=loaded.info)).path_written
    [tags] = exiftool_json(exiftool, "-n", "-XMP-tiff:all", sidecar)
    assert (tags["ImageWidth"], tags["ImageHeight"], tags["Orientation"]) == (*stored, orientation)


def test_stored_scores_of_another_frame_are_not_used_and_not_overwritten(tmp_path: Path, exiftool: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The database keeps boxes in the EXIF frame (export and review use them): a photo its host
    turns by XMP is scored in the host's frame for the sidecar, and the database keeps its own."""
    from clipcrop_plugin.store import Store

    db = tmp_path / "crops.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{db}")
    (tmp_path / "lib").mkdir()
    p = photo(tmp_path / "lib" / "turned.png", (480, 320))
    code, _, err = run("scan", str(p.parent), "--scorer", "heuristic")
    assert code == 0, err
    (p.parent / "turned.xmp").write_text(TURNED_BY_HOST, encoding="utf-8")
    code, _, err = run("xmp", "write", str(p), "--source", "db")
    assert code == 1 and "stored scores are for another frame" in err
    code, out, err = run("xmp", "write", str(p), "--scorer", "heuristic")
    assert code == 0 and "scored now" in out, err
    [tags] = exiftool_json(exiftool, "-n", "-XMP-tiff:Orientation", "-XMP-clipcrop:UprightWidth", p.parent / "turned.xmp")
    assert (tags["Orientation"], tags["UprightWidth"]) == (6, 320)
    with Store.open(f"sqlite:///{db}") as store:
        detail = store.photo_detail(str(p.resolve()))
    assert (detail.photo.width, detail.photo.height) == (480, 320) and (detail.orientation or 1) == 1
