"""Embedded mode on synthetic files: replace-not-append, extended XMP, MPF fallback, PNG iTXt, clear."""

from __future__ import annotations

import hashlib
import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.xmp import decoded, exiftool_json, info_for, jpeg_segments, make_suggestion, oriented_jpeg

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.xmp import clear_crop_metadata, read_crop_metadata, write_crop_metadata
from clipcrop_plugin.xmp import jpeg as jpegmod
from clipcrop_plugin.xmp import png as pngmod


def photo_image(w: int = 320, h: int = 200) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def xmp_count(data: bytes) -> int:
    segs, _ = jpegmod.parse_segments(data)
    return sum(1 for s in segs if s.marker == 0xE1 and s.payload(data).startswith(jpegmod.XMP_SIG))


def test_rewrite_replaces_the_one_xmp_segment_and_clear_restores_the_bytes(tmp_path: Path, exiftool: str) -> None:
    photo = oriented_jpeg(tmp_path / "a.jpg", photo_image(), 8)
    original = photo.read_bytes()
    first = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert first.mode_used == "embed" and first.note is None
    data = photo.read_bytes()
    assert xmp_count(data) == 1 and hashlib.sha256(data).hexdigest() == first.sha256
    segs = jpeg_segments(data)
    # inserted right after the EXIF APP1, everything else in its place
    exif_i = next(i for i, s in enumerate(segs) if s[4:10] == b"Exif\0\0")
    assert segs[exif_i + 1][4:4 + len(jpegmod.XMP_SIG)] == jpegmod.XMP_SIG

    write_crop_metadata(photo, make_suggestion(photo, (10, 10, 150, 100)), mode="embed")
    data2 = photo.read_bytes()
    assert xmp_count(data2) == 1 and decoded(data2) == decoded(original)
    [t] = exiftool_json(exiftool, "-n", "-XMP-crs:all", "-Orientation", "-Make", photo)
    assert t["HasCrop"] is True and t["Orientation"] == 8 and t["Make"] == "ClipcropTest"
    assert read_crop_metadata(photo)["box"] == [10, 10, 150, 100]

    assert clear_crop_metadata(photo) == [photo]
    assert photo.read_bytes() == original  # the segment clipcrop created is gone again


def test_insert_after_app0_when_there_is_no_exif(tmp_path: Path) -> None:
    photo = tmp_path / "jfif.jpg"
    photo_image().save(photo, "JPEG", quality=90)
    original = photo.read_bytes()
    assert original[2:4] == b"\xff\xe0"
    info = info_for(photo)
    assert not info.has_orientation_tag
    write_crop_metadata(photo, make_suggestion(photo, info=info), mode="embed")
    data = photo.read_bytes()
    segs = jpeg_segments(data)
    assert segs[1][:2] == b"\xff\xe0" and segs[2][4:4 + len(jpegmod.XMP_SIG)] == jpegmod.XMP_SIG
    assert b"tiff:Orientation" not in data  # Pillow would read it as the orientation
    with Image.open(io.BytesIO(data)) as im:
        assert 0x0112 not in im.getexif()


def test_extended_xmp_segments_and_note_are_kept(tmp_path: Path) -> None:
    photo = tmp_path / "ext.jpg"
    photo_image().save(photo, "JPEG", quality=90)
    base = photo.read_bytes()
    guid = "0123456789ABCDEF0123456789ABCDEF"
    standard = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                f'<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
                f'xmpNote:HasExtendedXMP="{guid}"/></rdf:RDF></x:xmpmeta>').encode()
    ext_body = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
    ext_payload = jpegmod.EXT_XMP_SIG + guid.encode() + len(ext_body).to_bytes(4, "big") + (0).to_bytes(4, "big") + ext_body
    ext_seg = b"\xff\xe1" + (len(ext_payload) + 2).to_bytes(2, "big") + ext_payload
    data = base[:20] + jpegmod.xmp_segment(standard) + ext_seg + base[20:]
    assert data[2:4] == b"\xff\xe0" and int.from_bytes(data[4:6], "big") == 16  # after the JFIF APP0
    photo.write_bytes(data)
    write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    new = photo.read_bytes()
    assert ext_seg in new and new.count(jpegmod.EXT_XMP_SIG) == 1
    assert xmp_count(new) == 1
    packet = jpegmod.find_xmp(new)
    assert f'HasExtendedXMP="{guid}"'.encode() in packet and b"crs:HasCrop" in packet
    assert decoded(new) == decoded(base)


def test_mpf_file_falls_back_to_a_sidecar(tmp_path: Path) -> None:
    photo = tmp_path / "multi.jpg"
    photo_image().save(photo, "MPO", save_all=True, append_images=[photo_image(160, 100)])
    original = photo.read_bytes()
    assert b"MPF\0" in original
    info = info_for(photo)
    result = write_crop_metadata(photo, make_suggestion(photo, info=info), mode="embed")
    assert result.mode_used == "sidecar" and "MPF" in result.note
    assert result.path_written == tmp_path / "multi.xmp"
    assert photo.read_bytes() == original


def test_gain_map_xmp_falls_back(tmp_path: Path) -> None:
    photo = tmp_path / "hdr.jpg"
    photo_image().save(photo, "JPEG", xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf='
                       b'"http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" xmlns:hdrgm='
                       b'"http://ns.adobe.com/hdr-gain-map/1.0/" hdrgm:Version="1.0"/></rdf:RDF></x:xmpmeta>')
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "gain map" in result.note and photo.read_bytes() == original


def test_damaged_jpeg_header_is_a_clear_error(tmp_path: Path) -> None:
    photo = tmp_path / "trunc.jpg"
    photo_image().save(photo, "JPEG")
    good = photo.read_bytes()
    sugg = make_suggestion(photo)
    photo.write_bytes(good[:40])  # cut inside the header segments
    with pytest.raises(MetadataError, match="truncated|damaged|ends"):
        write_crop_metadata(photo, sugg, mode="embed")
    assert photo.read_bytes() == good[:40]
    # fill bytes before a marker are legal and kept
    padded = good[:2] + b"\xff\xff" + good[2:]
    photo.write_bytes(padded)
    write_crop_metadata(photo, sugg, mode="embed")
    assert photo.read_bytes().startswith(good[:2] + b"\xff\xff")


def test_changed_photo_is_refused(tmp_path: Path) -> None:
    photo = tmp_path / "c.jpg"
    photo_image().save(photo, "JPEG")
    sugg = make_suggestion(photo)
    photo_image(300, 300).save(photo, "JPEG")
    before = photo.read_bytes()
    with pytest.raises(MetadataError, match="changed since it was scored"):
        write_crop_metadata(photo, sugg, mode="embed")
    assert photo.read_bytes() == before


def test_read_only_photo_gets_a_sidecar(tmp_path: Path) -> None:
    photo = tmp_path / "ro.jpg"
    photo_image().save(photo, "JPEG")
    photo.chmod(0o444)
    import os

    if os.access(photo, os.W_OK):
        pytest.skip("running as root: file permissions are not enforced")
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "read-only" in result.note


def test_embedding_keeps_the_file_mode(tmp_path: Path) -> None:
    photo = oriented_jpeg(tmp_path / "m.jpg", photo_image(), 1)
    photo.chmod(0o640)
    write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert photo.stat().st_mode & 0o777 == 0o640


def png_chunks(data: bytes) -> list[bytes]:
    return [data[c.start:c.end] for c in pngmod.parse_chunks(data)]


def test_png_itxt_embedding(tmp_path: Path, exiftool: str) -> None:
    from PIL import PngImagePlugin

    photo = tmp_path / "p.png"
    meta = PngImagePlugin.PngInfo()
    meta.add_text("Comment", "kept as is")
    meta.add_itxt("Author", "Ansel", lang="en")
    photo_image().save(photo, "PNG", pnginfo=meta)
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "embed"
    new = photo.read_bytes()
    assert decoded(new) == decoded(original)
    xmp = [c for c in png_chunks(new) if c[4:8] == b"iTXt" and c[8:].startswith(pngmod.XMP_KEYWORD + b"\0")]
    assert len(xmp) == 1
    assert zlib.crc32(xmp[0][4:-4]) & 0xFFFFFFFF == int.from_bytes(xmp[0][-4:], "big")
    assert [c for c in png_chunks(new) if c not in xmp] == png_chunks(original)
    idat = next(i for i, c in enumerate(png_chunks(new)) if c[4:8] == b"IDAT")
    assert png_chunks(new)[idat - 1] == xmp[0]  # right before the first IDAT
    [t] = exiftool_json(exiftool, "-n", "-XMP-crs:all", "-PNG:Comment", photo)
    assert t["HasCrop"] is True and t["Comment"] == "kept as is"
    with Image.open(photo) as im:
        packet = im.info["xmp"]
    assert b"crs:HasCrop" in (packet.encode() if isinstance(packet, str) else packet)

    write_crop_metadata(photo, make_suggestion(photo, (5, 5, 100, 100)), mode="embed")
    assert sum(1 for c in png_chunks(photo.read_bytes()) if c[8:].startswith(pngmod.XMP_KEYWORD + b"\0")) == 1
    assert clear_crop_metadata(photo) == [photo]
    assert photo.read_bytes() == original


def test_other_formats_get_a_sidecar_with_a_note(tmp_path: Path) -> None:
    photo = tmp_path / "t.tiff"
    photo_image().save(photo, "TIFF")
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "TIFF" in result.note and photo.read_bytes() == original


def test_packet_over_the_jpeg_limit_falls_back(tmp_path: Path) -> None:
    photo = tmp_path / "big_xmp.jpg"
    filler = "x" * 64_800  # an existing packet just under the 65502-byte limit
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" '
              f'dc:format="{filler}"/></rdf:RDF></x:xmpmeta>').encode()
    photo_image().save(photo, "JPEG", xmp=packet)
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "65502" in result.note
    assert photo.read_bytes() == original
    assert read_crop_metadata(photo)["location"] == "sidecar"


def test_two_standard_xmp_segments_are_not_guessed_between(tmp_path: Path) -> None:
    photo = tmp_path / "two.jpg"
    photo_image().save(photo, "JPEG")
    data = photo.read_bytes()
    seg = jpegmod.xmp_segment(b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')
    photo.write_bytes(data[:2] + seg + seg + data[2:])
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "2 standard XMP" in result.note
    assert photo.read_bytes() == original
    assert clear_crop_metadata(photo) == [tmp_path / "two.xmp"]


def test_embedding_never_writes_through_a_symlink(tmp_path: Path) -> None:
    real = oriented_jpeg(tmp_path / "real.jpg", photo_image(), 1)
    before = real.read_bytes()
    link = tmp_path / "link.jpg"
    link.symlink_to(real)
    result = write_crop_metadata(link, make_suggestion(link), mode="embed")
    assert result.mode_used == "sidecar" and "symbolic link" in (result.note or "")
    assert link.is_symlink() and real.read_bytes() == before


def test_standalone_marker_in_the_header_is_kept(tmp_path: Path) -> None:
    photo = tmp_path / "tem.jpg"
    photo_image().save(photo, "JPEG")
    data = photo.read_bytes()
    sugg = make_suggestion(photo)
    photo.write_bytes(data[:2] + b"\xff\x01" + data[2:])  # TEM: a marker without a length field
    write_crop_metadata(photo, sugg, mode="embed")
    new = photo.read_bytes()
    _, sos_old = jpegmod.parse_segments(data)
    _, sos_new = jpegmod.parse_segments(new)
    assert b"\xff\x01" in jpeg_segments(new)[:4] and new[sos_new:] == data[sos_old:] and xmp_count(new) == 1
