"""Sidecar and embedded modes over the real EXIF sample corpus (copied to a temp folder first)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from support.xmp import decoded, exiftool_json, info_for, jpeg_segments, make_suggestion, sha256

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.xmp import clear_crop_metadata, read_crop_metadata, write_crop_metadata
from clipcrop_plugin.xmp import jpeg as jpegmod
from clipcrop_plugin.xmp.sidecar import base_conflicts

try:  # HEIC sizes come from pillow-heif when it is installed
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:  # pragma: no cover
    pass

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".png"}


@pytest.fixture()
def corpus_copy(corpus_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "corpus"
    shutil.copytree(corpus_dir, dest)
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the shared corpus is read-only; the copy need not be
    return dest


def corpus_photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)


def try_info(path: Path):
    try:
        return info_for(path)
    except Exception:  # corrupt samples: intake would record a failed Suggestion
        return None


def test_sidecars_for_whole_corpus_leave_originals_byte_identical(corpus_copy: Path, exiftool: str) -> None:
    files = sorted(p for p in corpus_copy.rglob("*") if p.is_file())
    before = {p: sha256(p) for p in files}
    written, failed = [], []
    owners: dict[Path, Path] = {}
    for photo in corpus_photos(corpus_copy):
        info = try_info(photo)
        if info is None:
            from clipcrop_plugin.results import Suggestion

            with pytest.raises(MetadataError, match="no crop to write"):
                write_crop_metadata(photo, Suggestion(str(photo), False, error="cannot decode"))
            failed.append(photo)
            continue
        result = write_crop_metadata(photo, make_suggestion(photo, info=info))
        # IMG.xmp, unless a sibling (IMG.CR2 next to IMG.JPG) owns that name: then IMG.JPG.xmp, said in a note
        shared = bool(base_conflicts(photo))
        assert result.path_written == (photo.with_name(photo.name + ".xmp") if shared else photo.with_suffix(".xmp"))
        assert shared == bool(result.note and "belongs to" in result.note)
        written.append(result.path_written)
        owners[result.path_written] = photo
    assert len(written) >= 80, (len(written), failed)
    assert {p: sha256(p) for p in files} == before  # every original untouched, byte for byte

    tags = {t["SourceFile"]: t for t in exiftool_json(exiftool, "-n", "-XMP-crs:all", "-XMP-tiff:all", *written)}
    assert len(tags) == len(written)
    for sidecar in written:
        t = tags[str(sidecar)]
        assert t["HasCrop"] is True and 0 <= t["CropLeft"] < t["CropRight"] <= 1, sidecar
        assert 0 <= t["CropTop"] < t["CropBottom"] <= 1, sidecar

    # clear removes the sidecars it created, and still touches no original
    for sidecar in written:
        photo = owners[sidecar]
        assert clear_crop_metadata(photo, mode="sidecar") == [sidecar]
        assert not sidecar.exists()
    assert {p: sha256(p) for p in files} == before


EXIF_TAGS = ("-Make", "-Model", "-DateTimeOriginal", "-Orientation", "-n")


def test_embedding_into_corpus_jpegs_is_lossless(corpus_copy: Path, exiftool: str) -> None:
    jpegs = sorted(p for p in corpus_photos(corpus_copy) if p.suffix.lower() in (".jpg", ".jpeg"))
    exif_before = {t["SourceFile"]: t for t in exiftool_json(exiftool, *EXIF_TAGS, *jpegs)}
    valid_before = {t["SourceFile"]: t.get("Validate") for t in exiftool_json(exiftool, "-validate", *jpegs)}
    embedded, fallbacks, errors = [], [], []
    for photo in jpegs:
        original = photo.read_bytes()
        info = try_info(photo)
        if info is None:
            continue
        try:
            result = write_crop_metadata(photo, make_suggestion(photo, info=info), mode="embed")
        except MetadataError as exc:
            errors.append((photo.name, str(exc)))
            assert photo.read_bytes() == original
            continue
        if result.mode_used == "sidecar":
            assert result.note and photo.read_bytes() == original
            fallbacks.append((photo.name, result.note))
            continue
        embedded.append(photo)
        new = photo.read_bytes()
        assert decoded(new) == decoded(original), photo
        xmp_seg = lambda b: b[4:4 + len(jpegmod.XMP_SIG)] == jpegmod.XMP_SIG  # noqa: E731
        assert [s for s in jpeg_segments(original) if not xmp_seg(s)] == \
               [s for s in jpeg_segments(new) if not xmp_seg(s)], photo
        assert sum(1 for s in jpeg_segments(new) if xmp_seg(s)) == 1
    assert len(embedded) >= 40, (len(embedded), fallbacks, errors)

    exif_after = {t["SourceFile"]: t for t in exiftool_json(exiftool, *EXIF_TAGS, *embedded)}
    for name, tags in exif_after.items():
        assert tags == exif_before[name], name
    # exiftool's structure check finds nothing new (same verdict, same warning count) in any file
    for t in exiftool_json(exiftool, "-validate", *embedded):
        assert t.get("Validate") == valid_before[t["SourceFile"]], t["SourceFile"]
    crops = exiftool_json(exiftool, "-XMP-crs:all", *embedded)
    assert all(t.get("HasCrop") is True and "CropLeft" in t for t in crops)


def test_embed_merges_into_photoshop_xmp_and_clear_restores(corpus_copy: Path, exiftool: str) -> None:
    photo = corpus_copy / "jpg" / "xmp" / "BlueSquare.jpg"
    tags_before = exiftool_json(exiftool, "-XMP:all", photo)[0]
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "embed", result.note
    tags = exiftool_json(exiftool, "-XMP:all", photo)[0]
    for key, value in tags_before.items():
        assert tags[key] == value, key  # every property Photoshop wrote is still there
    assert tags["HasCrop"] is True
    assert read_crop_metadata(photo)["location"] == "embedded"
    assert clear_crop_metadata(photo) == [photo]
    assert exiftool_json(exiftool, "-XMP:all", photo)[0] == tags_before


def test_rotated_corpus_photo_sidecar(corpus_copy: Path, exiftool: str) -> None:
    photo = corpus_copy / "jpg" / "orientation" / "landscape_6.jpg"
    with Image.open(photo) as im:
        assert im.getexif().get(0x0112) == 6
    result = write_crop_metadata(photo, make_suggestion(photo))
    [t] = exiftool_json(exiftool, "-n", "-XMP-crs:all", "-XMP-tiff:all", result.path_written)
    assert t["Orientation"] == 6
    with Image.open(photo) as im:
        assert (t["ImageWidth"], t["ImageHeight"]) == im.size


def test_heic_sidecar_describes_the_displayed_frame(corpus_copy: Path, exiftool: str) -> None:
    imaging = pytest.importorskip("clipcrop_plugin.imaging")
    photo = corpus_copy / "heic" / "mobile" / "iphone_13_pro_max.HEIC"
    try:
        loaded = imaging.load_image(photo, min_side=64)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"no HEIC decoder here ({exc})")
    info = loaded.info
    result = write_crop_metadata(photo, make_suggestion(photo, info=info))
    [t] = exiftool_json(exiftool, "-n", "-XMP-tiff:all", "-XMP-crs:all", result.path_written)
    assert "Orientation" not in t  # EXIF says 6, but the decoder already applied the container's rotation
    assert (t["ImageWidth"], t["ImageHeight"]) == (info.width, info.height)
