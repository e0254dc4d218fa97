"""Lossless XMP embedding in JPEG by APP1 segment surgery (SPEC 6).

Only the header segments (SOI up to SOS) are parsed. The standard XMP APP1 is replaced in place,
or a new one is inserted after the EXIF APP1 (else after a leading APP0, else after SOI). Every
other byte, from fill bytes between segments to the entropy-coded data and anything after EOI,
is copied unchanged: the output is ``data[:a] + new_segment + data[b:]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MetadataError

XMP_SIG = b"http://ns.adobe.com/xap/1.0/\x00"
EXT_XMP_SIG = b"http://ns.adobe.com/xmp/extension/\x00"
EXIF_SIG = b"Exif\x00\x00"
MPF_SIG = b"MPF\x00"
MAX_PACKET = 65502  # Adobe's limit for the standard packet; larger ones need extended XMP

SOI, SOS, EOI, APP0, APP1, APP2 = 0xD8, 0xDA, 0xD9, 0xE0, 0xE1, 0xE2
# Markers that stand alone (no length field): TEM and the restart markers.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class Segment:
    """One header segment: marker byte, where it starts (its 0xFF) and ends, and its payload span."""

    marker: int
    start: int
    end: int
    payload_start: int

    def payload(self, data: bytes) -> bytes:
        return data[self.payload_start:self.end]


class EmbedRefused(MetadataError):
    """The file is a valid JPEG but embedding would be unsafe; the caller writes a sidecar instead."""


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def parse_segments(data: bytes) -> tuple[list[Segment], int]:
    """The header segments and the offset of the SOS marker.

    Raises :class:`MetadataError` for anything that is not a well-formed JPEG header:
    missing SOI, a truncated segment, a bad length, EOI or end of data before SOS.
    """
    if data[:2] != b"\xff\xd8":
        raise MetadataError("not a JPEG file (no SOI marker)")
    segments: list[Segment] = [Segment(SOI, 0, 2, 2)]
    pos, n = 2, len(data)
    while True:
        if pos >= n:
            raise MetadataError("JPEG ends before its image data (no SOS marker)")
        if data[pos] != 0xFF:
            raise MetadataError(f"JPEG header is damaged at byte {pos} (expected a marker)")
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes may precede any marker
            pos += 1
        if pos >= n:
            raise MetadataError("JPEG is truncated inside a marker")
        marker = data[pos]
        pos += 1
        if marker == 0x00:
            raise MetadataError(f"JPEG header is damaged at byte {start} (stuffed byte outside scan data)")
        if marker == SOS:
            return segments, start
        if marker == EOI:
            raise MetadataError("JPEG has no image data (EOI before SOS)")
        if marker in _STANDALONE:
            segments.append(Segment(marker, start, pos, pos))
            continue
        if pos + 2 > n:
            raise MetadataError(f"JPEG is truncated in segment 0x{marker:02X}")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise MetadataError(f"JPEG segment 0x{marker:02X} has an invalid length {length}")
        end = pos + length
        if end > n:
            raise MetadataError(f"JPEG is truncated in segment 0x{marker:02X} at byte {start}")
        segments.append(Segment(marker, start, end, pos + 2))
        pos = end


def _is_xmp(seg: Segment, data: bytes) -> bool:
    return seg.marker == APP1 and data[seg.payload_start:seg.payload_start + len(XMP_SIG)] == XMP_SIG


def find_xmp(data: bytes) -> bytes | None:
    """The standard XMP packet embedded in a JPEG, or None."""
    segments, _ = parse_segments(data)
    for seg in segments:
        if _is_xmp(seg, data):
            return seg.payload(data)[len(XMP_SIG):]
    return None


def check_embeddable(data: bytes) -> tuple[list[Segment], int]:
    """Parse the header and refuse files whose layout an inserted segment would break.

    MPF (APP2 ``MPF\\0``) and Ultra HDR / gain-map files record offsets of trailing images that
    any growth of the primary image's header would invalidate.
    """
    segments, sos = parse_segments(data)
    xmp_count = 0
    for seg in segments:
        payload_head = data[seg.payload_start:seg.payload_start + 4]
        if seg.marker == APP2 and payload_head == MPF_SIG:
            raise EmbedRefused("JPEG has a multi-picture (MPF) segment; embedding would break its offsets")
        if _is_xmp(seg, data):
            xmp_count += 1
            body = seg.payload(data)
            if b"hdrgm" in body or b"GContainer" in body or b"hdr-gain-map" in body:
                raise EmbedRefused("JPEG carries an HDR gain map (Ultra HDR / GContainer); embedding would break it")
    if xmp_count > 1:
        raise EmbedRefused(f"JPEG has {xmp_count} standard XMP segments; refusing to pick one")
    return segments, sos


def xmp_segment(packet: bytes) -> bytes:
    """An APP1 segment holding ``packet``; raises :class:`EmbedRefused` above 65502 bytes."""
    if len(packet) > MAX_PACKET:
        raise EmbedRefused(f"XMP packet is {len(packet)} bytes, over the {MAX_PACKET}-byte JPEG limit")
    body = XMP_SIG + packet
    return b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body


def replace_xmp(data: bytes, packet: bytes | None) -> bytes:
    """``data`` with its standard XMP APP1 replaced by ``packet`` (inserted if absent; removed if None)."""
    segments, _ = check_embeddable(data)
    new_seg = b"" if packet is None else xmp_segment(packet)
    for seg in segments:
        if _is_xmp(seg, data):
            return data[:seg.start] + new_seg + data[seg.end:]
    if packet is None:
        return data
    at = segments[0].end
    exif = next((s for s in segments if s.marker == APP1 and s.payload(data)[:6] == EXIF_SIG), None)
    if exif is not None:
        at = exif.end
    elif len(segments) > 1 and segments[1].marker == APP0:
        at = segments[1].end
    out = data[:at] + new_seg + data[at:]
    parse_segments(out)  # the result must still be a well-formed header
    return out
