"""Public API of the XMP writer: write, clear and read clipcrop's crop metadata for one photo.

The default touches no original: the crop goes into a sidecar, ``IMG.xmp`` unless asked for
``IMG.JPG.xmp``. ``mode="embed"`` puts it into a JPEG's APP1 or a PNG's iTXt losslessly, and falls
back to a sidecar (with a note saying why) for other formats, read-only files, MPF / gain-map JPEGs
and oversized packets.

A sidecar records the photo's name and content hash (``clipcrop:Source``, ``clipcrop:SourceHash``),
so clipcrop still recognises its own sidecar after photo and sidecar were renamed together.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ClipcropError, MetadataError
from ..hashing import content_hash
from ..results import Crop, Suggestion, configured_keep_margin
from ..safeio import check_write_target, read_regular
from . import jpeg, png
from .atomic import atomic_delete, atomic_write
from .orientation import box_to_crs, stored_to_upright
from .packet import (
    MAX_PACKET_BYTES,
    CropPacket,
    XmpDoc,
    apply_crop,
    clear_crop,
    has_clipcrop,
    host_values,
    is_empty,
    new_doc,
    parse_packet,
    read_crop,
    serialize,
)
from .sidecar import DEFAULT_NAMING, NAMINGS, sidecar_candidates, sidecar_path

MODES = ("sidecar", "embed")
EMBED_PADDING = 2048  # lets other tools edit the embedded packet in place
ALTERNATIVES_PER_SET = 3
_ROTATED_BY_DECODER = {"HEIF", "HEIC", "AVIF"}


@dataclass
class WriteResult:
    """Where a crop went: ``mode_used`` is ``"sidecar"`` or ``"embed"``; ``note`` explains a fallback."""

    path_written: Path
    mode_used: str
    note: str | None = None
    sha256: str = ""  # of the bytes written, so a folder watcher can recognise its own write
    # The suggestion was "keep as is": no crop was written (and an earlier clipcrop crop, if
    # any, was cleared; ``path_written`` is then the file changed, else the sidecar not written).
    kept: bool = False
    changed: bool = True  # False only for a keep that found no earlier clipcrop crop to clear


def _fmt(v: float) -> str:
    return f"{float(v):.6f}"


def _box(box: Sequence[int]) -> str:
    return ",".join(str(int(v)) for v in box)


def primary_crop(suggestion: Suggestion, *, aspects: Sequence[str] | None = None,
                 keep_margin: float | None = None) -> Crop | None:
    """The crop to write as ``crs:HasCrop="True"``, or None for "keep as is".

    The one crop-or-keep rule (:meth:`Suggestion.choice`): the best of ``aspects[0]`` when given
    (a requested ratio always gets its crop), else the photo's primary crop, which for the free
    grid must beat the full frame by ``keep_margin`` (default: the configured ``keep_margin``).
    """
    margin = configured_keep_margin() if keep_margin is None else keep_margin
    return suggestion.choice(aspects[0] if aspects else None, margin).crop


def build_packet(suggestion: Suggestion, *, aspects: Sequence[str] | None = None,
                 now: datetime | None = None, keep_margin: float | None = None) -> CropPacket:
    """The values to write for ``suggestion``: its best crop (of ``aspects[0]`` when given) as crs
    values, provenance and explanation in the clipcrop namespace, and the top alternatives of every
    aspect set (or only of ``aspects``). Raises :class:`MetadataError` for a "keep as is"
    suggestion: there is no crop to write (:func:`write_crop_metadata` clears instead)."""
    if not suggestion.ok or suggestion.info is None:
        raise MetadataError(f"no crop to write: {suggestion.error or 'the photo was not scored'}")
    info = suggestion.info
    present = suggestion.aspects()
    wanted = list(aspects) if aspects else present
    missing = [a for a in wanted if a not in present]
    if missing:
        raise MetadataError(
            f"the suggestion has no {', '.join(missing)} crops (scored sets: {', '.join(present) or 'none'})")
    if suggestion.best(wanted[0] if aspects else None) is None:
        raise MetadataError(f"no crop to write: no candidate crop fits this {info.width}x{info.height} image "
                            "(only the full frame was scored)")
    primary = primary_crop(suggestion, aspects=aspects, keep_margin=keep_margin)
    if primary is None:
        raise MetadataError("no crop to write: keep as is (no grid crop beats the full frame by the keep margin)")
    # The frame the boxes were scored in: the EXIF orientation, or the rotation a host keeps in
    # XMP for a file without one (see batch.write_paths); without either, intake says 1.
    o = info.orientation
    w, h = info.width, info.height
    left, top, right, bottom = box_to_crs(primary.box, w, h, o)
    crs = {
        "HasCrop": "True",
        "CropLeft": _fmt(left),
        "CropTop": _fmt(top),
        "CropRight": _fmt(right),
        "CropBottom": _fmt(bottom),
        "CropAngle": "0",
        "CropConstrainToWarp": "0",
        "AlreadyApplied": "False",
    }
    tiff = {"ImageWidth": str(info.stored_width), "ImageLength": str(info.stored_height)}
    # HEIF decoders hand out pixels already turned by the container's irot/imir and HEIF readers
    # ignore the EXIF tag, so no EXIF orientation describes the frame those pixels are in.
    if info.has_orientation_tag and (info.format or "").upper() not in _ROTATED_BY_DECODER:
        tiff["Orientation"] = str(info.orientation)
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    simple = {
        "Version": "1",
        "Source": Path(suggestion.path).name,
        "Aspect": primary.aspect,
        "Box": _box(primary.box),
        "UprightWidth": str(w),
        "UprightHeight": str(h),
        "Score": _fmt(primary.score),
        "Improvement": _fmt(primary.improvement),
        "Scorer": suggestion.scorer or "unknown",
        "Time": when.isoformat().replace("+00:00", "Z"),
    }
    if suggestion.weights_hash:
        simple["WeightsHash"] = suggestion.weights_hash
    explanation = [{"Element": c.element, "Change": f"{float(c.change):+.6f}"} for c in primary.explanation[:3]]
    alternatives: list[dict[str, str]] = []
    for aspect in wanted:
        for crop in suggestion.ranked(aspect, ALTERNATIVES_PER_SET):
            cl, ct, cr, cb = box_to_crs(crop.box, w, h, o)
            alternatives.append({
                "Aspect": crop.aspect, "Rank": str(int(crop.rank)),
                "Left": _fmt(cl), "Top": _fmt(ct), "Right": _fmt(cr), "Bottom": _fmt(cb),
                "Box": _box(crop.box), "Score": _fmt(crop.score), "Improvement": _fmt(crop.improvement),
            })
    return CropPacket(crs=crs, tiff=tiff, simple=simple, explanation=explanation, alternatives=alternatives)


MAX_PHOTO_BYTES = 1 << 30  # embedding rewrites the whole file in memory; no JPEG/PNG is this big


def _read(path: Path, limit: int = MAX_PACKET_BYTES) -> bytes:
    """A sidecar's (or, with a larger ``limit``, a photo's) bytes: regular files only, bounded."""
    return read_regular(path, limit, error=MetadataError)


def _photo_hash(photo: Path) -> str | None:
    try:
        return content_hash(photo) if photo.is_file() else None
    except ClipcropError:
        return None


def _owned_by(doc: XmpDoc, photo: Path, sidecar: Path) -> bool:
    """Whether clipcrop data in ``sidecar`` belongs to ``photo`` (a shared NAME.xmp may hold another's).

    The recorded name decides; a different name still matches when the recorded content hash is
    the photo's (photo and sidecar renamed together, as hosts and file managers do).
    """
    ours = (read_crop(doc) or {}).get("clipcrop", {})
    source = ours.get("Source")
    if source is None:
        return sidecar.name.lower() == (photo.name + ".xmp").lower()
    if source == photo.name:
        return True
    recorded = ours.get("SourceHash")
    return bool(recorded) and recorded == _photo_hash(photo)


def _orientation_note(photo: Path, suggestion: Suggestion, host: dict[str, str]) -> str | None:
    """A note when the host keeps a rotation in XMP that differs from the frame the crop was scored in."""
    raw = host.get("tiff:Orientation")
    info = suggestion.info
    if raw is None or info is None or not raw.isdigit() or not 1 <= int(raw) <= 8 or int(raw) == info.orientation:
        return None
    return (f"{photo.name}'s XMP keeps tiff:Orientation={raw}, but this crop was scored in orientation "
            f"{info.orientation}; kept it (the crop covers the same pixels); `clipcrop xmp write --source score` "
            "scores it in that frame")


def _host_notes(photo: Path, suggestion: Suggestion, doc: XmpDoc | None) -> list[str]:
    host = host_values(doc) if doc is not None else {}
    notes = [n for n in (_orientation_note(photo, suggestion, host),) if n]
    if host.get("crs:AlreadyApplied", "").lower() == "true":
        notes.append("crs:AlreadyApplied is True (settings already baked into the pixels): kept, so Adobe "
                     "hosts will not apply this crop")
    return notes


def host_orientation(path: str | os.PathLike[str], *, mode: str = "sidecar",
                     naming: str = DEFAULT_NAMING) -> int | None:
    """The rotation a host keeps in the XMP a write to ``path`` would merge into (a
    ``tiff:Orientation`` clipcrop did not write), or None; a damaged packet counts as none."""
    photo = Path(path)
    try:
        doc: XmpDoc | None = None
        if mode == "embed" and photo.is_file():
            data = _read(photo)
            kind = _format(data)
            doc = _embedded_doc(data, kind, photo.name) if kind is not None else None
        if doc is None:
            target, _ = sidecar_path(photo, naming)
            if target.is_file():
                doc = parse_packet(_read(target), what=target.name)
        raw = host_values(doc).get("tiff:Orientation", "") if doc is not None else ""
    except ClipcropError:
        return None
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 8 else None


def _write_sidecar(photo: Path, suggestion: Suggestion, packet: CropPacket, naming: str,
                   note: str | None) -> WriteResult:
    target, naming_note = sidecar_path(photo, naming)
    notes = [n for n in (note, naming_note) if n]
    doc: XmpDoc
    source_hash = _photo_hash(photo)
    if source_hash:
        packet.simple["SourceHash"] = source_hash
    if target.exists():
        doc = parse_packet(_read(target), what=f"existing sidecar {target.name}")
        if naming == "base" and has_clipcrop(doc) and not _owned_by(doc, photo, target):
            ext_name = sidecar_path(photo, "ext")[0].name
            notes.append(f"{target.name} holds another file's crop; wrote {ext_name} instead")
            return _write_sidecar(photo, suggestion, packet, "ext", "; ".join(notes))
        notes += _host_notes(photo, suggestion, doc)
        apply_crop(doc, packet, created=False)
    else:
        doc = apply_crop(new_doc(), packet, created=True)
    data = serialize(doc)
    atomic_write(target, data)
    return WriteResult(target, "sidecar", "; ".join(notes) or None, hashlib.sha256(data).hexdigest())


def _stored_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """The stored pixel size from the JPEG SOF or PNG IHDR header."""
    if kind == "png":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    segments, _ = jpeg.parse_segments(data)
    for seg in segments:
        if 0xC0 <= seg.marker <= 0xCF and seg.marker not in (0xC4, 0xC8, 0xCC):
            p = seg.payload(data)
            if len(p) >= 5:
                return int.from_bytes(p[3:5], "big"), int.from_bytes(p[1:3], "big")
    return None


def _format(data: bytes) -> str | None:
    if jpeg.is_jpeg(data):
        return "jpeg"
    if png.is_png(data):
        return "png"
    return None


def _embedded_doc(data: bytes, kind: str, what: str) -> XmpDoc | None:
    raw = jpeg.find_xmp(data) if kind == "jpeg" else png.find_xmp(data)
    return None if raw is None else parse_packet(raw, what=what)


def _write_embedded(photo: Path, suggestion: Suggestion, packet: CropPacket, naming: str) -> WriteResult:
    if photo.is_symlink():  # rewriting it would replace the link (or write through it): never
        return _write_sidecar(photo, suggestion, packet, naming, "the photo is a symbolic link; wrote a sidecar")
    data = _read(photo, MAX_PHOTO_BYTES)
    kind = _format(data)
    if kind is None:
        fmt = (suggestion.info.format if suggestion.info else "") or photo.suffix.lstrip(".").upper()
        return _write_sidecar(photo, suggestion, packet, naming, f"embedding supports JPEG and PNG, not {fmt}; wrote a sidecar")
    try:
        check_write_target(photo)  # mode bits count even for root: 0444 is the owner's "do not touch"
    except MetadataError:
        return _write_sidecar(photo, suggestion, packet, naming, "the photo is read-only; wrote a sidecar")
    info = suggestion.info
    assert info is not None
    size = _stored_size(data, kind)
    if size is not None and size != (info.stored_width, info.stored_height):
        raise MetadataError(
            f"{photo.name} changed since it was scored ({size[0]}x{size[1]} now, "
            f"{info.stored_width}x{info.stored_height} then); score it again")
    try:
        if kind == "jpeg":
            jpeg.check_embeddable(data)
        try:
            existing = _embedded_doc(data, kind, f"embedded XMP of {photo.name}")
        except MetadataError as exc:
            # A damaged or hostile packet is left exactly as it is; the crop still reaches hosts.
            raise jpeg.EmbedRefused(str(exc)) from None
        notes = _host_notes(photo, suggestion, existing)
        doc = apply_crop(existing if existing is not None else new_doc(), packet, created=existing is None)
        blob = serialize(doc, padding=EMBED_PADDING)
        if kind == "jpeg" and len(blob) > jpeg.MAX_PACKET:
            blob = serialize(doc)  # drop the padding before giving up on embedding
        new = jpeg.replace_xmp(data, blob) if kind == "jpeg" else png.replace_xmp(data, blob)
    except jpeg.EmbedRefused as exc:
        return _write_sidecar(photo, suggestion, packet, naming, f"{exc}; wrote a sidecar")
    atomic_write(photo, new)
    return WriteResult(photo, "embed", "; ".join(notes) or None, hashlib.sha256(new).hexdigest())


def write_crop_metadata(path: str | os.PathLike[str], suggestion: Suggestion, *, mode: str = "sidecar",
                        naming: str = DEFAULT_NAMING, aspects: Sequence[str] | None = None,
                        now: datetime | None = None, keep_margin: float | None = None) -> WriteResult:
    """Write ``suggestion``'s best crop for the photo at ``path`` as XMP (SPEC 6).

    ``mode``: ``"sidecar"`` (default; the photo is not touched) or ``"embed"`` (JPEG APP1 / PNG
    iTXt, lossless and atomic; other cases fall back to a sidecar and say why in ``note``).
    ``naming``: ``"base"`` -> ``IMG.xmp`` (default; never a RAW sibling's), ``"ext"`` -> ``IMG.JPG.xmp``.
    ``aspects``: write the best crop of ``aspects[0]`` and alternatives of these sets only.
    An existing sidecar or packet is merged; a host's ``crs:AlreadyApplied`` and ``tiff:Orientation``
    are kept as they are (and said so in ``note`` when they matter). Raises :class:`MetadataError` with a one-line reason;
    on error nothing on disk has changed.

    Crop or keep: when the suggestion is "keep as is" (:func:`primary_crop` is None), no crop is
    written and a crop clipcrop wrote earlier is cleared, so Lightroom and darktable never apply
    a crop that clipcrop rates no better than the full frame; ``kept`` is then True.
    """
    if mode not in MODES:
        raise MetadataError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if naming not in NAMINGS:
        raise MetadataError(f"naming must be one of {', '.join(NAMINGS)}, not {naming!r}")
    photo = Path(path)
    margin = configured_keep_margin() if keep_margin is None else keep_margin
    if suggestion.ok and suggestion.info is not None and suggestion.best(aspects[0] if aspects else None) is not None \
            and primary_crop(suggestion, aspects=aspects, keep_margin=margin) is None:
        if not photo.is_file():
            raise MetadataError(f"{photo} is not a file")
        return _keep(photo, suggestion, mode, naming)
    packet = build_packet(suggestion, aspects=aspects, now=now, keep_margin=margin)
    if not photo.is_file():
        raise MetadataError(f"{photo} is not a file")
    if mode == "embed":
        return _write_embedded(photo, suggestion, packet, naming)
    return _write_sidecar(photo, suggestion, packet, naming, None)


def _keep(photo: Path, suggestion: Suggestion, mode: str, naming: str) -> WriteResult:
    """Write nothing for a "keep as is" photo, and clear a crop clipcrop wrote before."""
    cleared = clear_crop_metadata(photo, mode="all" if mode == "embed" else "sidecar")
    reason = suggestion.choice(margin=configured_keep_margin()).reason
    if photo in cleared:
        data = _read(photo)
        return WriteResult(photo, "embed", f"{reason}; cleared the earlier clipcrop crop",
                           hashlib.sha256(data).hexdigest(), kept=True)
    if cleared:
        return WriteResult(cleared[0], "sidecar", f"{reason}; cleared the earlier clipcrop crop", "", kept=True)
    return WriteResult(sidecar_path(photo, naming)[0], "sidecar", f"{reason}; nothing written", "", kept=True,
                       changed=False)


def strip_sidecar(sidecar: Path, doc: XmpDoc) -> None:
    """Remove clipcrop's crop from ``doc`` and save it to ``sidecar``; a sidecar clipcrop created
    that holds nothing else afterwards is deleted instead."""
    _, created = clear_crop(doc)
    if created and is_empty(doc):
        atomic_delete(sidecar)
    else:
        atomic_write(sidecar, serialize(doc))


def _clear_sidecars(photo: Path, naming: str | None) -> list[Path]:
    cleared: list[Path] = []
    candidates = sidecar_candidates(photo)
    if naming == "base":
        candidates = candidates[:1]
    elif naming == "ext":
        candidates = candidates[1:]
    for sidecar in candidates:
        if not sidecar.exists():
            continue
        doc = parse_packet(_read(sidecar), what=f"sidecar {sidecar.name}")
        if not has_clipcrop(doc) or not _owned_by(doc, photo, sidecar):
            continue
        check_write_target(sidecar)  # a linked or read-only sidecar is left as it is, with one line
        strip_sidecar(sidecar, doc)
        cleared.append(sidecar)
    return cleared


def _clear_embedded(photo: Path) -> list[Path]:
    if photo.is_symlink():
        return []  # clipcrop never embeds through a link, so nothing in its target is ours
    data = _read(photo, MAX_PHOTO_BYTES)
    kind = _format(data)
    if kind is None:
        return []
    try:
        try:
            doc = _embedded_doc(data, kind, f"embedded XMP of {photo.name}")
        except MetadataError:
            return []  # clipcrop never writes over a packet it cannot parse, so none of it is ours
        if doc is None or not has_clipcrop(doc):
            return []
        _, created = clear_crop(doc)
        blob = None if created and is_empty(doc) else serialize(doc, padding=EMBED_PADDING)
        if kind == "jpeg" and blob is not None and len(blob) > jpeg.MAX_PACKET:
            blob = serialize(doc)
        new = jpeg.replace_xmp(data, blob) if kind == "jpeg" else png.replace_xmp(data, blob)
    except jpeg.EmbedRefused:
        return []  # clipcrop never embeds into such files, so there is nothing of ours to remove
    atomic_write(photo, new)
    return [photo]


def clear_crop_metadata(path: str | os.PathLike[str], *, mode: str = "all",
                        naming: str | None = None) -> list[Path]:
    """Remove what clipcrop wrote for the photo at ``path``; returns the files changed or deleted.

    ``mode``: ``"sidecar"``, ``"embed"`` or ``"all"`` (default). ``naming``: limit sidecars to
    ``"base"`` or ``"ext"`` names (default both). A sidecar renamed together with its photo is
    still found (by the content hash it records). Values clipcrop replaced are restored, and a
    sidecar or embedded packet clipcrop created is deleted when nothing else was added to it.
    """
    if mode not in (*MODES, "all"):
        raise MetadataError(f"mode must be sidecar, embed or all, not {mode!r}")
    if naming is not None and naming not in NAMINGS:
        raise MetadataError(f"naming must be one of {', '.join(NAMINGS)}, not {naming!r}")
    photo = Path(path)
    cleared: list[Path] = []
    if mode in ("sidecar", "all"):
        cleared += _clear_sidecars(photo, naming)
    if mode in ("embed", "all") and photo.is_file():
        cleared += _clear_embedded(photo)
    return cleared


def _decorate(data: dict, location: str, where: Path) -> dict:
    crs = data["crs"]
    raw = data["tiff"].get("Orientation", "1")
    orientation = int(raw) if raw.isdigit() and 1 <= int(raw) <= 8 else 1
    if all(k in crs for k in ("CropLeft", "CropTop", "CropRight", "CropBottom")):
        data["upright"] = stored_to_upright(
            (crs["CropLeft"], crs["CropTop"], crs["CropRight"], crs["CropBottom"]), orientation)
    ours = data["clipcrop"]
    for key in ("Score", "Improvement"):
        if key in ours:
            try:
                data[key.lower()] = float(ours[key])
            except ValueError:
                pass
    if "Box" in ours:
        try:
            data["box"] = [int(v) for v in ours["Box"].split(",")]
        except ValueError:
            pass
    data["location"] = location
    data["file"] = str(where)
    return data


def read_crop_metadata(path: str | os.PathLike[str]) -> dict | None:
    """The crop recorded for a photo (sidecar first, then embedded), or for a ``.xmp`` file itself.

    Returns None when there is no crop; the dict holds ``crs`` (stored-frame fractions),
    ``upright`` (fractions of the upright image), ``tiff``, ``clipcrop`` (our raw values),
    ``score``/``improvement``/``box`` when clipcrop wrote it, ``explanation``, ``alternatives``,
    ``ours``, ``location`` (``"sidecar"``/``"embedded"``) and ``file``.
    """
    p = Path(path)
    if p.suffix.lower() == ".xmp":
        data = read_crop(parse_packet(_read(p), what=p.name))
        return None if data is None else _decorate(data, "sidecar", p)
    for sidecar in sidecar_candidates(p):
        if sidecar.exists():
            doc = parse_packet(_read(sidecar), what=sidecar.name)
            if has_clipcrop(doc) and not _owned_by(doc, p, sidecar):
                continue
            data = read_crop(doc)
            if data is not None:
                return _decorate(data, "sidecar", sidecar)
    if p.is_file():
        blob = _read(p, MAX_PHOTO_BYTES)
        kind = _format(blob)
        if kind is not None:
            doc = _embedded_doc(blob, kind, f"embedded XMP of {p.name}")
            data = read_crop(doc) if doc is not None else None
            if data is not None:
                return _decorate(data, "embedded", p)
    return None
