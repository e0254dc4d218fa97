"""Damaged inputs: every truncation and random corruption of a JPEG/PNG header or an XMP packet
gives a MetadataError (or a safe fallback), never another exception and never a changed file."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.xmp import jpeg as jpegmod
from clipcrop_plugin.xmp import png as pngmod
from clipcrop_plugin.xmp.packet import parse_packet


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "JPEG", exif=Image.Exif().tobytes())
    return buf.getvalue()


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


JPEG = _jpeg()
PNG = _png()
PACKET = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"


def test_every_truncation_of_the_jpeg_header_is_a_metadata_error() -> None:
    _, sos = jpegmod.parse_segments(JPEG)
    for cut in range(sos + 1):
        with pytest.raises(MetadataError):
            jpegmod.replace_xmp(JPEG[:cut], PACKET)


def test_every_truncation_of_a_png_is_a_metadata_error() -> None:
    for cut in range(len(PNG)):
        with pytest.raises(MetadataError):
            pngmod.replace_xmp(PNG[:cut], PACKET)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4))
def test_corrupted_jpeg_headers_never_escape_as_other_errors(flips: list[tuple[int, int]]) -> None:
    data = bytearray(JPEG)
    for pos, value in flips:
        data[pos % 200] = value
    try:
        out = jpegmod.replace_xmp(bytes(data), PACKET)
    except MetadataError:
        return
    # whatever was accepted was rewritten losslessly: the scan data and all else is still there
    _, sos = jpegmod.parse_segments(out)
    assert out[sos:] == bytes(data)[jpegmod.parse_segments(bytes(data))[1]:]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_as_xmp_only_raise_metadata_error(blob: bytes) -> None:
    try:
        parse_packet(blob)
    except MetadataError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="<>/=\"' &;!x:rdfDescriptionxmpmetaENTITYDOCTYPE[]", max_size=200))
def test_xml_ish_text_only_raises_metadata_error(text: str) -> None:
    try:
        parse_packet(text.encode())
    except MetadataError:
        pass
