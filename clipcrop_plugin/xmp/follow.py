"""Keep clipcrop's sidecars with their photos when photos move or disappear (the daemon's calls).

A host that applies crops from ``IMG.xmp`` (darktable, Lightroom) would otherwise apply a moved
photo's crop to whatever file takes its old name, and a deleted photo would leave a sidecar
behind. Only clipcrop's part of a sidecar is ever moved or removed: a sidecar that holds nothing
but ours is moved or deleted as a whole; one that also holds a host's data (darktable history,
ratings, keywords) keeps all of it and loses only our keys. A sidecar that does not parse is
never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ClipcropError, MetadataError
from .atomic import atomic_write
from .packet import XmpDoc, apply_crop, has_clipcrop, new_doc, our_packet, parse_packet, serialize
from .sidecar import sidecar_path
from .writer import _photo_hash, _read, clear_crop_metadata, strip_sidecar


def _ours_for(doc: XmpDoc, old: Path, new: Path, sidecar: Path) -> bool:
    """Whether the clipcrop data in ``doc`` (read from ``sidecar``) was written for the photo that
    moved from ``old`` to ``new``: the writer's ownership rule, for either name."""
    packet = our_packet(doc)
    if packet is None:
        return False
    source = packet.simple.get("Source")
    if source is None:
        return sidecar.name.lower() in ((old.name + ".xmp").lower(), (new.name + ".xmp").lower())
    if source in (old.name, new.name):
        return True
    recorded = packet.simple.get("SourceHash")
    return bool(recorded) and recorded == _photo_hash(new)


def _old_sidecars(old: Path) -> list[tuple[Path, str]]:
    """The sidecars clipcrop may have written for ``old``, with the naming each one stands for."""
    base = old.with_suffix(".xmp")
    out = []
    for path, naming in ((base, "base"), (old.with_name(old.name + ".xmp"), "ext")):
        for spelled in (path, path.with_name(path.name[:-4] + ".XMP")):
            if spelled.is_file():
                out.append((spelled, naming))
                break
    return out


def _parse(path: Path) -> XmpDoc | None:
    try:
        return parse_packet(_read(path), what=f"sidecar {path.name}")
    except MetadataError:
        return None  # not ours to repair: never touched


def follow_photo_move(old: str | os.PathLike[str], new: str | os.PathLike[str]) -> list[Path]:
    """After the photo at ``old`` moved to ``new``: move clipcrop's sidecar data with it.

    Our data goes to the sidecar of the same naming for ``new`` (``NAME.xmp`` falls back to
    ``NAME.EXT.xmp`` when a sibling owns it), merged into one a host may already have there. The
    old sidecar is deleted when it held nothing but ours, else only our keys leave it. A sidecar
    the user renamed along with the photo has its ``clipcrop:Source`` brought up to date.
    Returns the files written or deleted.
    """
    old_p, new_p = Path(old), Path(new)
    changed: list[Path] = []
    for sidecar, naming in _old_sidecars(old_p):
        try:
            changed += _move_ours(sidecar, naming, old_p, new_p)
        except MetadataError:
            continue  # a damaged clipcrop:Prior or crop value: leave that sidecar as it is
    if changed:
        return changed
    # Nothing left at the old name: the sidecar moved with the photo. Bring its record up to date.
    for naming in ("base", "ext"):
        target, _ = sidecar_path(new_p, naming)
        try:
            doc = _parse(target) if target.is_file() else None
            if doc is None or not has_clipcrop(doc) or not _ours_for(doc, old_p, new_p, target):
                continue
            packet = our_packet(doc)
            assert packet is not None
            if packet.simple.get("Source") == new_p.name:
                continue
            packet.simple["Source"] = new_p.name
            apply_crop(doc, packet, created=False)
        except MetadataError:
            continue
        atomic_write(target, serialize(doc))
        changed.append(target)
    return changed


def _move_ours(sidecar: Path, naming: str, old_p: Path, new_p: Path) -> list[Path]:
    doc = _parse(sidecar)
    if doc is None or not has_clipcrop(doc) or not _ours_for(doc, old_p, new_p, sidecar):
        return []
    packet = our_packet(doc)
    assert packet is not None
    packet.simple["Source"] = new_p.name
    target, _note = sidecar_path(new_p, naming)
    if target.exists():
        dst = _parse(target)
        if dst is None or (has_clipcrop(dst) and not _ours_for(dst, old_p, new_p, target)):
            return []  # the new name's sidecar is someone else's or damaged: leave both alone
        apply_crop(dst, packet, created=False)
    else:
        dst = apply_crop(new_doc(), packet, created=True)
    atomic_write(target, serialize(dst))
    changed = [target]
    strip_sidecar(sidecar, doc)
    changed.append(sidecar)
    return changed


def forget_photo(path: str | os.PathLike[str]) -> list[Path]:
    """The photo at ``path`` was deleted: remove clipcrop's data from its sidecars.

    A sidecar that holds nothing but ours is deleted; otherwise only our keys are removed (values
    we replaced come back). Returns the files changed or deleted; a damaged sidecar is skipped.
    """
    photo = Path(path)
    if photo.exists():
        return []  # not deleted after all (recreated, or never gone)
    try:
        return clear_crop_metadata(photo, mode="sidecar")
    except ClipcropError:
        # One damaged sidecar must not keep the other one: clear them one naming at a time.
        changed: list[Path] = []
        for naming in ("base", "ext"):
            try:
                changed += clear_crop_metadata(photo, mode="sidecar", naming=naming)
            except ClipcropError:
                continue
        return changed
