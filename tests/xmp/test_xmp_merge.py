"""Merging into host sidecars, clear, sidecar naming rules, and hostile XMP."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from support.xmp import exiftool_json, make_suggestion, sha256

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.results import PhotoInfo
from clipcrop_plugin.xmp import clear_crop_metadata, read_crop_metadata, write_crop_metadata
from clipcrop_plugin.xmp.packet import parse_packet

LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
   xmp:Rating="4"
   xmp:Label="Green"
   tiff:Make="Canon"
   tiff:Model="Canon EOS 5D Mark IV"
   tiff:Orientation="1"
   crs:Version="15.0"
   crs:ProcessVersion="11.0"
   crs:WhiteBalance="As Shot"
   crs:Exposure2012="+0.35"
   crs:Contrast2012="+12"
   crs:HasCrop="True"
   crs:CropTop="0.1"
   crs:CropLeft="0.2"
   crs:CropBottom="0.9"
   crs:CropRight="0.8"
   crs:CropAngle="1.5"
   crs:CropConstrainToWarp="0"
   crs:HasSettings="True"
   crs:AlreadyApplied="False">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>beach &amp; sea</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2023:07:14 18:22:01"
   xmp:Rating="2"
   xmpMM:DerivedFrom="IMG_0042.JPG"
   darktable:import_timestamp="63825470000000000"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4">
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000000000000000803f"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="crop"
      darktable:enabled="1"
      darktable:modversion="1"
      darktable:params="cdcc4c3ecdcc4c3e0000803f0000803f"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def fake_photo(path: Path, w: int = 600, h: int = 400) -> Path:
    Image.new("RGB", (w, h), (90, 120, 150)).save(path, "JPEG")
    return path


def raw_suggestion(path: Path):
    info = PhotoInfo(str(path), 600, 400, 600, 400, 1, True, "RAW")
    return make_suggestion(path, (60, 40, 540, 360), info)


def all_tags(exiftool: str, path: Path) -> dict:
    [t] = exiftool_json(exiftool, "-XMP:all", "-struct", path)
    t.pop("SourceFile")
    return t


def test_lightroom_sidecar_keeps_its_content_and_clear_restores_it(tmp_path: Path, exiftool: str) -> None:
    raw = tmp_path / "IMG_0001.CR2"
    raw.write_bytes(b"not really a raw file")
    sidecar = tmp_path / "IMG_0001.xmp"
    sidecar.write_text(LIGHTROOM, encoding="utf-8")
    before = all_tags(exiftool, sidecar)

    result = write_crop_metadata(raw, raw_suggestion(raw), naming="base")
    assert result.path_written == sidecar and result.note is None
    after = all_tags(exiftool, sidecar)
    ours = {"HasCrop", "CropTop", "CropLeft", "CropBottom", "CropRight", "CropAngle", "CropConstrainToWarp",
            "AlreadyApplied", "ImageWidth", "ImageHeight", "Orientation"}
    for key, value in before.items():
        if key not in ours:
            assert after[key] == value, key  # ratings, keywords, develop settings, tone curve
    assert after["Subject"] == ["holiday", "beach & sea"] and after["Rating"] == 4
    assert after["CropLeft"] == pytest.approx(0.1) and after["CropAngle"] == 0
    assert raw.read_bytes() == b"not really a raw file"

    assert clear_crop_metadata(raw) == [sidecar]
    assert all_tags(exiftool, sidecar) == before  # Lightroom's own crop is back, exactly


def test_darktable_sidecar_keeps_history_and_clear_removes_only_ours(tmp_path: Path, exiftool: str) -> None:
    photo = fake_photo(tmp_path / "IMG_0042.JPG")
    sidecar = tmp_path / "IMG_0042.JPG.xmp"  # darktable's own file: only written into on request
    sidecar.write_text(DARKTABLE, encoding="utf-8")
    before = all_tags(exiftool, sidecar)
    write_crop_metadata(photo, make_suggestion(photo), naming="ext")
    after = all_tags(exiftool, sidecar)
    for key, value in before.items():
        assert after[key] == value, key
    assert after["History"][1]["Operation"] == "crop" and after["HasCrop"] is True
    text = sidecar.read_text(encoding="utf-8")
    assert 'darktable:params="cdcc4c3ecdcc4c3e0000803f0000803f"' in text  # prefixes kept, not ns0:
    # a second write replaces ours, it does not pile up
    write_crop_metadata(photo, make_suggestion(photo, (0, 0, 300, 200)), naming="ext")
    assert sidecar.read_text(encoding="utf-8").count("crs:HasCrop=\"") == 1
    assert clear_crop_metadata(photo) == [sidecar]
    assert all_tags(exiftool, sidecar) == before
    assert "clipcrop" not in sidecar.read_text(encoding="utf-8")


def test_user_crop_made_after_ours_survives_clear(tmp_path: Path) -> None:
    photo = fake_photo(tmp_path / "u.jpg")
    result = write_crop_metadata(photo, make_suggestion(photo))
    text = result.path_written.read_text(encoding="utf-8")
    import re

    text = re.sub(r'crs:CropLeft="[^"]*"', 'crs:CropLeft="0.333000"', text)  # the user moved our crop
    result.path_written.write_text(text, encoding="utf-8")
    clear_crop_metadata(photo)
    assert result.path_written.exists()
    assert 'crs:CropLeft="0.333000"' in result.path_written.read_text(encoding="utf-8")
    assert "clipcrop:" not in result.path_written.read_text(encoding="utf-8")


def test_jpeg_never_writes_into_a_raw_siblings_sidecar(tmp_path: Path) -> None:
    raw = tmp_path / "IMG_7.NEF"
    raw.write_bytes(b"raw")
    jpg = fake_photo(tmp_path / "IMG_7.JPG")
    raw_sidecar = tmp_path / "IMG_7.xmp"
    raw_sidecar.write_text(LIGHTROOM, encoding="utf-8")
    digest = sha256(raw_sidecar)
    result = write_crop_metadata(jpg, make_suggestion(jpg), naming="base")
    assert result.path_written == tmp_path / "IMG_7.JPG.xmp"
    assert "IMG_7.NEF" in result.note
    assert sha256(raw_sidecar) == digest
    # without a sibling, base naming is honoured
    solo = fake_photo(tmp_path / "solo.jpg")
    assert write_crop_metadata(solo, make_suggestion(solo), naming="base").path_written == tmp_path / "solo.xmp"
    assert read_crop_metadata(solo)["file"] == str(tmp_path / "solo.xmp")


def test_shared_base_sidecar_of_another_photo_is_not_taken_over(tmp_path: Path) -> None:
    a = fake_photo(tmp_path / "pic.jpg")
    write_crop_metadata(a, make_suggestion(a), naming="base")
    a.unlink()  # pic.xmp now names pic.jpg as its source; pic.png must not overwrite it
    b = tmp_path / "pic.png"
    Image.new("RGB", (600, 400)).save(b)
    digest = sha256(tmp_path / "pic.xmp")
    result = write_crop_metadata(b, make_suggestion(b), naming="base")
    assert result.path_written == tmp_path / "pic.png.xmp" and "another file" in result.note
    assert sha256(tmp_path / "pic.xmp") == digest
    assert clear_crop_metadata(b) == [tmp_path / "pic.png.xmp"]
    assert sha256(tmp_path / "pic.xmp") == digest


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="&lol9;"/>
</rdf:RDF></x:xmpmeta>
"""

EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE x [ <!ENTITY xxe SYSTEM "file:///etc/passwd"> ]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:source>&xxe;</dc:source>
</rdf:Description></rdf:RDF></x:xmpmeta>
"""

EXTERNAL_DTD = """<?xml version="1.0"?>
<!DOCTYPE x:xmpmeta SYSTEM "http://example.invalid/evil.dtd">
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("hostile", [BILLION_LAUGHS, EXTERNAL, EXTERNAL_DTD], ids=["billion-laughs", "xxe", "dtd"])
def test_hostile_sidecar_is_refused_untouched(tmp_path: Path, hostile: str) -> None:
    photo = fake_photo(tmp_path / "h.jpg")
    sidecar = tmp_path / "h.xmp"
    sidecar.write_text(hostile, encoding="utf-8")
    digest = sha256(sidecar)
    with pytest.raises(MetadataError) as info:
        write_crop_metadata(photo, make_suggestion(photo))
    message = str(info.value)
    assert "\n" not in message and "refused" in message and "root:" not in message
    assert sha256(sidecar) == digest
    with pytest.raises(MetadataError):
        read_crop_metadata(photo)
    with pytest.raises(MetadataError):
        clear_crop_metadata(photo)
    assert sha256(sidecar) == digest


def test_hostile_embedded_xmp_is_left_alone(tmp_path: Path) -> None:
    photo = tmp_path / "e.jpg"
    Image.new("RGB", (600, 400)).save(photo, "JPEG", xmp=EXTERNAL.encode())
    original = photo.read_bytes()
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "refused" in result.note
    assert photo.read_bytes() == original


@pytest.mark.parametrize("junk", ["<x:xmpmeta", "not xml at all", "<html><body/></html>", ""])
def test_malformed_sidecar_is_not_overwritten(tmp_path: Path, junk: str) -> None:
    photo = fake_photo(tmp_path / "m.jpg")
    sidecar = tmp_path / "m.xmp"
    sidecar.write_text(junk, encoding="utf-8")
    with pytest.raises(MetadataError):
        write_crop_metadata(photo, make_suggestion(photo))
    assert sidecar.read_text(encoding="utf-8") == junk


def test_packet_parser_keeps_unknown_prefixes() -> None:
    doc = parse_packet(DARKTABLE.encode())
    assert doc.prefixes["http://darktable.sf.net/"] == "darktable"


ODD_PACKETS = {
    "default-namespace": """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""><Rating xmlns="http://ns.adobe.com/xap/1.0/">5</Rating></rdf:Description>
 </rdf:RDF></x:xmpmeta>""",
    "lang-alt-and-comment": """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><!-- written by hand -->
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:title><rdf:Alt><rdf:li xml:lang="x-default">Sunset &lt;3</rdf:li><rdf:li xml:lang="fr">Coucher</rdf:li></rdf:Alt></dc:title>
  </rdf:Description>
  <rdf:Description rdf:about="" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" photoshop:City="Zürich"/>
 </rdf:RDF>
</x:xmpmeta>""",
    "bare-rdf-and-prefix-clash": """<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://example.com/not-camera-raw/" crs:Thing="kept"/>
 </rdf:RDF>""",
}


@pytest.mark.parametrize("name", sorted(ODD_PACKETS))
def test_odd_but_valid_packets_round_trip(tmp_path: Path, exiftool: str, name: str) -> None:
    photo = fake_photo(tmp_path / "odd.jpg")
    sidecar = tmp_path / "odd.xmp"
    sidecar.write_text(ODD_PACKETS[name], encoding="utf-8")
    before = all_tags(exiftool, sidecar)
    write_crop_metadata(photo, make_suggestion(photo))
    after = all_tags(exiftool, sidecar)
    assert after["HasCrop"] is True
    if name == "default-namespace":
        # exiftool misreads a default namespace ("RatingXmlns"); written back with a prefix it reads right
        assert after["Rating"] == 5
        clear_crop_metadata(photo)
        assert all_tags(exiftool, sidecar) == {"Rating": 5}
        return
    for key, value in before.items():
        assert after[key] == value, key
    clear_crop_metadata(photo)
    assert all_tags(exiftool, sidecar) == before


def test_existing_upper_case_sidecar_is_reused(tmp_path: Path) -> None:
    photo = fake_photo(tmp_path / "DSC_1.JPG")
    upper = tmp_path / "DSC_1.XMP"
    upper.write_text(LIGHTROOM, encoding="utf-8")
    result = write_crop_metadata(photo, make_suggestion(photo), naming="base")
    assert result.path_written == upper and not (tmp_path / "DSC_1.xmp").exists()
    assert "xmp:Rating=\"4\"" in upper.read_text(encoding="utf-8")
