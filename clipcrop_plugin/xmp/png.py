"""Lossless XMP embedding in PNG: one iTXt chunk with keyword ``XML:com.adobe.xmp`` (SPEC 6).

Chunks are walked by their length fields; an existing XMP chunk is replaced in place, otherwise
the new one goes right before the first IDAT. All other chunks are copied byte for byte.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..errors import MetadataError

PNG_SIG = b"\x89PNG\r\n\x1a\n"
XMP_KEYWORD = b"XML:com.adobe.xmp"
_MAX_INFLATE = 16 * 1024 * 1024  # a compressed XMP chunk may not inflate beyond this (zip bombs)


@dataclass(frozen=True)
class Chunk:
    """One chunk: its 4-byte type and the byte span [start, end) including length and CRC."""

    type: bytes
    start: int
    end: int

    def data(self, png: bytes) -> bytes:
        return png[self.start + 8:self.end - 4]


def is_png(data: bytes) -> bool:
    return data[:8] == PNG_SIG


def parse_chunks(data: bytes) -> list[Chunk]:
    """Every chunk up to IEND; raises :class:`MetadataError` on a truncated or malformed file."""
    if not is_png(data):
        raise MetadataError("not a PNG file (bad signature)")
    chunks: list[Chunk] = []
    pos, n = 8, len(data)
    while True:
        if pos + 12 > n:
            raise MetadataError("PNG is truncated (no IEND chunk)")
        length = int.from_bytes(data[pos:pos + 4], "big")
        ctype = data[pos + 4:pos + 8]
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > n or not ctype.isalpha():
            raise MetadataError(f"PNG chunk at byte {pos} is damaged or truncated")
        chunks.append(Chunk(ctype, pos, end))
        pos = end
        if ctype == b"IEND":
            return chunks


def _is_xmp(chunk: Chunk, data: bytes) -> bool:
    return chunk.type == b"iTXt" and data[chunk.start + 8:chunk.start + 8 + len(XMP_KEYWORD) + 1] == XMP_KEYWORD + b"\0"


def _itxt_text(body: bytes) -> bytes:
    """The text of an iTXt chunk body, inflated (bounded) when it is compressed."""
    try:
        kw_end = body.index(b"\0")
        flag, method = body[kw_end + 1], body[kw_end + 2]
        lang_end = body.index(b"\0", kw_end + 3)
        trans_end = body.index(b"\0", lang_end + 1)
    except (ValueError, IndexError):
        raise MetadataError("PNG XMP chunk is malformed") from None
    text = body[trans_end + 1:]
    if flag == 0:
        return text
    if method != 0:
        raise MetadataError("PNG XMP chunk uses an unknown compression method")
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(text, _MAX_INFLATE)
    except zlib.error as exc:
        raise MetadataError(f"PNG XMP chunk does not inflate ({exc})") from None
    if inflater.unconsumed_tail:
        raise MetadataError("PNG XMP chunk inflates beyond 16 MiB; refusing it")
    return out


def find_xmp(data: bytes) -> bytes | None:
    """The XMP packet of a PNG, or None."""
    for chunk in parse_chunks(data):
        if _is_xmp(chunk, data):
            return _itxt_text(chunk.data(data))
    return None


def xmp_chunk(packet: bytes) -> bytes:
    """An uncompressed iTXt chunk (no language, no translated keyword) holding ``packet``."""
    body = XMP_KEYWORD + b"\0" + b"\0\0" + b"\0" + b"\0" + packet
    crc = zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF
    return len(body).to_bytes(4, "big") + b"iTXt" + body + crc.to_bytes(4, "big")


def replace_xmp(data: bytes, packet: bytes | None) -> bytes:
    """``data`` with its XMP chunk replaced by ``packet`` (inserted before IDAT if absent; removed if None)."""
    chunks = parse_chunks(data)
    xmp = [c for c in chunks if _is_xmp(c, data)]
    if len(xmp) > 1:
        raise MetadataError(f"PNG has {len(xmp)} XMP chunks; refusing to pick one")
    new = b"" if packet is None else xmp_chunk(packet)
    if xmp:
        return data[:xmp[0].start] + new + data[xmp[0].end:]
    if packet is None:
        return data
    idat = next((c for c in chunks if c.type == b"IDAT"), None)
    if idat is None:
        raise MetadataError("PNG has no IDAT chunk")
    return data[:idat.start] + new + data[idat.start:]
