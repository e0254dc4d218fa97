"""``clipcrop suggest``: score photos now and print the best crops (text or JSON lines)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..candidates import AspectRatio, parse_aspect
from ..config import load_settings
from ..errors import ClipcropError, ConfigError
from ..results import Crop, Suggestion, configured_keep_margin
from ..safeio import show
from .params import aspect_option, fail, json_option, scorer_options, top_option
from .text import explain_changes

_JPEG_SUFFIXES = (".jpg", ".jpeg")
_OTHER_IMAGE_SUFFIXES = (".png", ".webp", ".tif", ".tiff", ".gif", ".bmp", ".heic", ".heif", ".avif", ".jxl")


def explain(crop: Crop) -> str:
    """``more rule of thirds (+0.31), less center composition (-0.28)``: the crop's explanation,
    then what the subject guard says about it (``cuts face``, or why the set's best gave
    something up)."""
    text = explain_changes(crop.explanation, "the full frame" if crop.aspect == "full" else "no element changes")
    extra = [crop.note] if crop.note else ([", ".join(crop.flags)] if crop.flags else [])
    return "; ".join([text, *extra])


def format_choice(s: Suggestion, margin: float | None = None) -> str:
    """``  suggestion: keep as is (...)`` or ``  suggestion: 4:5 crop 10,0,410,500``."""
    ch = s.choice(margin=configured_keep_margin() if margin is None else margin)
    if ch.crop is None:
        return f"  suggestion: {ch.reason}"
    x1, y1, x2, y2 = ch.crop.box
    return f"  suggestion: {ch.crop.aspect} crop {x1},{y1},{x2},{y2} ({ch.crop.improvement:+.3f} vs full frame)"


def format_suggestion(s: Suggestion, top: int) -> str:
    """Human-readable block for one photo: per candidate set its best crop(s)."""
    info = s.info
    assert info is not None
    head = f"{show(s.path)}  {info.width}x{info.height}"
    if info.orientation != 1:
        head += f"  (EXIF orientation {info.orientation})"
    head += f"  scorer={s.scorer}"
    full = s.full_frame
    if full is not None:
        head += f"  full frame score {full.score:.3f}"
    lines = [head, format_choice(s)]
    for crop in s.top(top) if top else s.listed():
        x1, y1, x2, y2 = crop.box
        lines.append(
            f"  {crop.aspect:<6} #{crop.rank:<2} box {x1},{y1},{x2},{y2} ({x2 - x1}x{y2 - y1})"
            f"  score {crop.score:.3f}  {crop.improvement:+.3f} vs full frame  {explain(crop)}"
        )
    if s.subjects:
        lines.append("  subjects: " + "; ".join(
            f"{x.kind.replace('_', ' ')} {','.join(map(str, x.box))} ({x.score:.2f})" for x in s.subjects))
    return "\n".join(lines)


class PreviewTargets:
    """Where ``--preview OUT`` writes each photo's preview.

    OUT is a single file when it ends in .jpg/.jpeg, is not an existing folder and exactly one
    photo file was given; otherwise OUT is a folder that receives ``<name>.preview.jpg`` per
    photo (``-2``, ``-3``... when two photos share a name). An input photo is never overwritten.
    """

    def __init__(self, out: str, paths: tuple[str, ...]) -> None:
        self.out = Path(out)
        suffix = self.out.suffix.lower()
        if suffix and suffix not in _JPEG_SUFFIXES and not self.out.is_dir() and suffix in _OTHER_IMAGE_SUFFIXES:
            # "x.png" is surely meant as a file: never make a folder of that name.
            raise ConfigError(f"--preview {out}: previews are JPEG files; name it .jpg, or give a folder")
        if self.out.suffix.lower() in _JPEG_SUFFIXES and len(paths) == 1 and Path(paths[0]).is_dir():
            raise ConfigError(f"--preview {out}: a folder of photos needs a folder for its previews, not one file")
        self.single = (
            self.out.suffix.lower() in _JPEG_SUFFIXES
            and not self.out.is_dir()
            and len(paths) == 1
            and not Path(paths[0]).is_dir()
        )
        self.used: set[Path] = set()

    def target(self, photo: str) -> Path:
        if self.single:
            target = self.out
        else:
            stem = Path(photo).stem
            target = self.out / f"{stem}.preview.jpg"
            n = 2
            while target in self.used:
                target = self.out / f"{stem}.preview-{n}.jpg"
                n += 1
        self.used.add(target)
        if target.exists() and os.path.samefile(target, photo):
            raise ClipcropError(f"{target}: refusing to overwrite the photo itself with its preview")
        return target


@click.command("suggest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@aspect_option
@top_option(3)
@json_option
@click.option("--preview", "preview", metavar="OUT", default=None, help="Write a JPEG with the crops drawn (file or folder).")
@scorer_options
@click.option("--no-grid", is_flag=True, help="Skip the GAIC grid candidates (only the --aspect sets).")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
def suggest(
    paths: tuple[str, ...],
    aspects: tuple[AspectRatio, ...],
    top: int,
    as_json: bool,
    preview: str | None,
    scorer: str,
    device: str,
    weights: str | None,
    no_grid: bool,
    no_recursive: bool,
) -> None:
    """Suggest crops for photos and folders, now (nothing is stored or written).

    Prints, per photo, the best crop of each candidate set (GAIC grid and every --aspect), its
    score, its improvement over the uncropped frame and the elements that changed most.
    Boxes are x1,y1,x2,y2 in upright (EXIF-rotated) pixels.

    \b
    Examples:
      clipcrop suggest ~/Pictures/holiday --aspect 1:1 --aspect 16:9 --top 1
      clipcrop suggest IMG_0001.JPG --json
      clipcrop suggest IMG_0001.JPG --aspect 4:5 --preview preview.jpg
    """
    from ..preview import render_preview, save_preview
    from ..scoring.registry import load_scorer
    from ..suggest import suggest_paths

    try:
        targets = PreviewTargets(preview, paths) if preview else None
    except ConfigError as exc:
        fail(str(exc), 2)
    settings = load_settings()
    if not aspects and settings.aspects:
        aspects = tuple(parse_aspect(a) for a in settings.aspects)
    scorer_obj = load_scorer(scorer, settings=settings, device=device, weights=weights)
    if no_grid and not aspects:
        fail("--no-grid leaves no candidates: add at least one --aspect W:H", 2)

    total = errors = 0
    for s in suggest_paths(
        paths, scorer_obj, aspects, batch_size=settings.batch_size, grid=not no_grid, recursive=not no_recursive
    ):
        total += 1
        if s.ok and targets is not None:
            try:
                target = targets.target(s.path)
                save_preview(render_preview(s.path, s), target)
                if not as_json:
                    click.echo(f"  preview written to {target}")
            except (ClipcropError, OSError) as exc:
                errors += 1
                click.echo(f"error: preview for {show(s.path)}: {exc}", err=True)
        if not s.ok:
            errors += 1
            click.echo(f"error: {s.error}", err=True)
            if as_json:
                click.echo(json.dumps(s.to_dict(top=top or None)))
            continue
        click.echo(json.dumps(s.to_dict(top=top or None)) if as_json else format_suggestion(s, top))
    if total == 0:
        fail(f"no photos found in {', '.join(paths)}")
    summary = f"{total} photo(s), {max(total - errors, 0)} ok, {errors} failed"
    click.echo(summary, err=as_json or errors > 0)
    if errors:
        raise SystemExit(1)
