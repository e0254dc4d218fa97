"""``clipcrop show``: everything stored about one photo, and an optional preview image."""

from __future__ import annotations

import json
import os

import click

from ..results import KEEP_REASON, configured_keep_margin, is_keep
from ..safeio import show as shown_path
from ..store import CropRecord, PhotoDetail
from .db import db_option, open_store
from .params import fail
from .text import describe_label, explain_changes


def _crop_line(c: CropRecord) -> str:
    x1, y1, x2, y2 = c.box
    expl = explain_changes(c.explanation, empty="")
    return (f"  {c.aspect:<6} #{c.rank:<3} box {x1},{y1},{x2},{y2} ({x2 - x1}x{y2 - y1})  score {c.score:.3f}"
            f"  {c.improvement:+.3f} vs full frame" + (f"  {expl}" if expl else ""))


def format_detail(d: PhotoDetail, all_candidates: bool) -> str:
    """The text ``clipcrop show`` prints."""
    p = d.photo
    lines = [f"{shown_path(p.path)}  (id {p.id}, {p.status}{', offline' if p.offline else ''})"]
    if p.width:
        lines.append(f"  {p.width}x{p.height} upright, EXIF orientation {d.orientation}, {d.format}")
    if p.taken_at or p.camera_model:
        lines.append(f"  taken {p.taken_at or '?'} with {' '.join(v for v in (p.camera_make, p.camera_model) if v) or '?'}")
    if p.error:
        lines.append(f"  error: {p.error}")
    if d.run is not None:
        lines.append(f"  scored by {d.run.scorer}{' (' + d.run.weights_hash[:12] + ')' if d.run.weights_hash else ''}"
                     f" on {d.run.device or '?'} at {d.run.created_at:%Y-%m-%d %H:%M} UTC,"
                     f" {d.run.n_candidates} candidates")
    if d.full_frame is not None:
        lines.append(f"  full frame score {d.full_frame.score:.3f}")
    if p.crop is not None and is_keep(p.crop.aspect, p.crop.improvement, configured_keep_margin()):
        lines.append(f"suggestion: {KEEP_REASON}")
        lines.append("best grid candidate (not written):")
        lines.append(_crop_line(p.crop))
    elif p.crop is not None:
        lines.append("best crop:")
        lines.append(_crop_line(p.crop))
    if d.best:
        lines.append("best per candidate set:")
        lines += [_crop_line(c) for c in d.best.values()]
    if all_candidates and d.candidates:
        lines.append("all candidates:")
        lines += [_crop_line(c) for c in d.candidates]
    if d.subjects:
        lines.append("subjects:")
        for sub in d.subjects:
            x1, y1, x2, y2 = sub.box
            lines.append(f"  {sub.kind:<12} box {x1},{y1},{x2},{y2} ({x2 - x1}x{y2 - y1})  confidence {sub.score:.2f}")
    if d.labels:
        lines.append("labels:")
        for lab in d.labels:
            what = describe_label(lab.kind, aspect=lab.aspect, rank=lab.rank, box=lab.box, other_rank=lab.other_rank,
                                  other_box=lab.other_box)
            lines.append(f"  #{lab.id} {what} ({lab.source}, {lab.created_at:%Y-%m-%d %H:%M})")
    if len(d.runs) > 1:
        lines.append("runs: " + ", ".join(f"{r.scorer}{'*' if r.active else ''}" for r in d.runs))
    return "\n".join(lines)


@click.command("show")
@click.argument("photo")
@click.option("--all", "all_candidates", is_flag=True, help="List every candidate, not only the best per set.")
@click.option("--preview", type=click.Path(dir_okay=False), metavar="OUT.jpg",
              help="Write the photo with the crop drawn and a chart of the element changes beside it.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
@db_option
def show(photo: str, all_candidates: bool, preview: str | None, as_json: bool, db: str | None) -> None:
    """Show a photo's stored crops, explanation and labels (PHOTO: path or id).

    \b
    Examples:
      clipcrop show ~/Pictures/IMG_0042.jpg
      clipcrop show 42 --preview /tmp/42.jpg
    """
    store = open_store(db)
    try:
        detail = store.photo_detail(photo)
    finally:
        store.close()
    if as_json:
        c = detail.photo.crop
        keep = c is not None and is_keep(c.aspect, c.improvement, configured_keep_margin())
        click.echo(json.dumps({**detail.to_dict(), "keep": keep}))
    else:
        click.echo(format_detail(detail, all_candidates))
    if preview:
        from ..preview import render_detail, save_preview

        if os.path.exists(preview) and os.path.samefile(preview, detail.photo.path):
            fail(f"--preview {preview} is the photo itself; choose another file")
        try:
            out = save_preview(render_detail(detail), preview)
        except OSError as exc:
            fail(f"cannot write {preview}: {exc.strerror or exc}")
        click.echo(f"preview: {out}", err=True)
