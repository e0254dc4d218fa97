"""``clipcrop xmp write|clear|show``: publish suggested crops as XMP, remove them, read them back."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..candidates import AspectRatio
from ..config import HOST_PROFILES
from ..errors import ClipcropError
from ..safeio import show as shown_path
from .params import aspect_option, exit_code_for, fail, json_option, scorer_options
from .progress import progress_bar, wants_progress

NAMING = click.Choice(["base", "ext"])
ORIGIN = {"db": "stored scores", "scored": "scored now"}


def _open_store(settings: object, required: bool) -> object | None:
    """The crop database when one exists (never creates one just to look in it)."""
    from ..store import Store

    url = settings.resolved_db_url()  # type: ignore[attr-defined]
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        if required:
            raise ClipcropError(f"no crop database at {url[len('sqlite:///'):]} (run clipcrop scan first)")
        return None
    return Store.open(url, settings=settings)  # type: ignore[arg-type]


def _report(outcomes, as_json: bool, verb: str) -> None:  # noqa: ANN001
    total = errors = 0
    for o in outcomes:
        total += 1
        if o.error:
            errors += 1
            click.echo(f"error: {o.error}", err=True)
            if as_json:
                click.echo(json.dumps({"path": o.path, "ok": False, "error": o.error}))
            continue
        if o.result is not None:
            r = o.result
            if as_json:
                click.echo(json.dumps({"path": o.path, "ok": True, "written": None if r.kept else str(r.path_written),
                                       "mode": r.mode_used, "note": r.note, "scores": o.origin, "kept": r.kept}))
            elif r.kept:
                click.echo(f"{o.path}: {r.note} ({ORIGIN.get(o.origin, o.origin)})")
            else:
                click.echo(f"{shown_path(o.path)} -> {shown_path(r.path_written)} ({r.mode_used}, {ORIGIN.get(o.origin, o.origin)})")
                if r.note:
                    click.echo(f"  note: {r.note}")
        else:
            files = [str(p) for p in o.cleared or []]
            shown = [shown_path(p) for p in files]
            if as_json:
                click.echo(json.dumps({"path": o.path, "ok": True, "cleared": files}))
            elif files:
                click.echo(f"{shown_path(o.path)}: cleared {', '.join(shown)}")
    if total == 0:
        fail("no photos found")
    click.echo(f"{total} photo(s), {total - errors} {verb}, {errors} failed", err=True)
    if errors:
        raise SystemExit(1)


def _count(paths: tuple[str, ...], exact: bool, recursive: bool, as_json: bool) -> int:
    """How many photos a bar counts to: the query's rows, else a walk (only when a bar is drawn)."""
    if exact:
        return len(paths)
    if not wants_progress(as_json):
        return 0
    from ..photofiles import iter_photo_paths

    return sum(1 for _ in iter_photo_paths(paths, recursive=recursive))


def _stepped(outcomes, step):  # noqa: ANN001, ANN202
    for o in outcomes:
        step(str(o.path))
        yield o


@click.group("xmp")
def xmp() -> None:
    """Write suggested crops as XMP (Camera Raw crs: crop), clear them, or show them.

    \b
    Examples:
      clipcrop xmp write ~/Pictures/holiday                 # IMG_1.xmp sidecars
      clipcrop xmp write IMG_1.JPG --embed --aspect 4:5     # into the JPEG itself, losslessly
      clipcrop xmp write --query --min-improvement 0.05     # photos from the database
      clipcrop xmp clear ~/Pictures/holiday
    """


@xmp.command("write")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--embed", is_flag=True, help="Write into the JPEG/PNG itself (lossless); other formats get a sidecar.")
@click.option("--naming", type=NAMING, default=None, help="Sidecar name: base = IMG.xmp, ext = IMG.JPG.xmp [host].")
@click.option("--host", "host", type=click.Choice(list(HOST_PROFILES)), default=None,
              help="Write for this host: picks --naming and --embed (see README, Hosts) [config: host].")
@aspect_option
@click.option("--source", type=click.Choice(["auto", "db", "score"]), default="auto", show_default=True,
              help="Where scores come from: the database when current (auto), only the database, or score now.")
@click.option("--query", "from_query", is_flag=True, help="Select the photos from the database instead of PATHS.")
@click.option("--folder", default=None, help="With --query: only photos under this folder.")
@click.option("--min-improvement", type=float, default=None, help="With --query: best crop improves at least this much.")
@click.option("--enhances", default=None, metavar="ELEMENT", help="With --query: best crop enhances this element.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="With --query: at most this many photos.")
@scorer_options
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
@json_option
def write(paths: tuple[str, ...], embed: bool, naming: str | None, aspects: tuple[AspectRatio, ...], source: str,
          from_query: bool, folder: str | None, min_improvement: float | None, enhances: str | None,
          limit: int | None, scorer: str, device: str, weights: str | None, no_recursive: bool,
          as_json: bool, host: str | None) -> None:
    """Write each photo's best crop as XMP crop metadata (a sidecar unless --embed).

    Existing sidecars and embedded XMP are merged, never replaced wholesale; a JPEG never writes
    into a RAW sibling's IMG.xmp. With --aspect, the best crop of the first ratio is written.

    \b
    Examples:
      clipcrop xmp write ~/Pictures/2024 --naming ext     # IMG_0001.JPG.xmp
      clipcrop xmp write IMG_0001.JPG --host lightroom    # into the JPEG: Lightroom reads it there
      clipcrop xmp write IMG_0001.JPG --embed --aspect 1:1
    """
    from ..config import load_settings
    from ..hooks import get_plugin_manager
    from ..jobs import MetadataPolicy, write_paths

    if not paths and not from_query:
        fail("give PHOTO or FOLDER paths, or --query", 2)
    try:
        settings = load_settings()
        host_naming, host_embed = HOST_PROFILES[host] if host else (settings.sidecar_naming, settings.embed)
        naming, embed = naming or host_naming, embed or host_embed
        if not aspects and settings.aspects:
            from ..candidates import parse_aspect

            aspects = tuple(parse_aspect(a) for a in settings.aspects)
        store = _open_store(settings, required=from_query or source == "db") if source != "score" else None
        if from_query:
            from ..store import QueryFilters

            filters = QueryFilters(folder=str(Path(folder).resolve()) if folder else None, status="scored",
                                   min_improvement=min_improvement, enhances=enhances)
            paths = tuple(p.path for p in store.query(filters, limit=limit))  # type: ignore[union-attr]
            source = "db"
            if not paths:
                fail("no photos in the database match the query")
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
        return

    def make_scorer() -> object:
        from ..scoring.registry import load_scorer

        return load_scorer(scorer, settings=settings, device=device, weights=weights)

    try:
        policy = MetadataPolicy.from_settings(settings, embed=embed, naming=naming, aspects=aspects)
        outcomes = write_paths(paths, policy, source=source, store=store, scorer_factory=make_scorer,  # type: ignore[arg-type]
                               aspects=aspects, recursive=not no_recursive, batch_size=settings.batch_size,
                               plugins=get_plugin_manager())
        with progress_bar(_count(paths, from_query, not no_recursive, as_json), "writing xmp", quiet=as_json) as step:
            _report(_stepped(outcomes, step), as_json, "written")
    except ClipcropError as exc:  # e.g. the scorer cannot be loaded
        fail(str(exc), exit_code_for(exc))


@xmp.command("clear")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--only", type=click.Choice(["all", "sidecar", "embed"]), default="all", show_default=True,
              help="Clear sidecars, embedded XMP, or both.")
@click.option("--naming", type=NAMING, default=None, help="Only this sidecar name (default: both).")
@click.option("--no-recursive", is_flag=True, help="Do not descend into sub-folders.")
@json_option
def clear(paths: tuple[str, ...], only: str, naming: str | None, no_recursive: bool, as_json: bool) -> None:
    """Remove exactly what clipcrop wrote: other metadata stays, replaced values come back.

    A sidecar clipcrop created is deleted when nothing else was added to it.

    \b
    Example:
      clipcrop xmp clear ~/Pictures/2024
    """
    from ..config import load_settings
    from ..hooks import get_plugin_manager
    from ..jobs import clear_paths

    try:
        # Clearing embedded XMP rewrites the photo: the database (if any) learns its new hash.
        store = _open_store(load_settings(), required=False)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
        return
    try:
        _report(clear_paths(paths, mode=only, naming=naming, recursive=not no_recursive, store=store,  # type: ignore[arg-type]
                            plugins=get_plugin_manager()), as_json, "checked")
    finally:
        if store is not None:
            store.close()  # type: ignore[attr-defined]


@xmp.command("show")
@click.argument("photo", type=click.Path())
@json_option
def show(photo: str, as_json: bool) -> None:
    """Show the crop recorded for PHOTO (its sidecar first, then embedded XMP), or for an .xmp file.

    \b
    Example:
      clipcrop xmp show IMG_0001.JPG --json
    """
    from ..xmp import read_crop_metadata

    data = read_crop_metadata(photo)
    if data is None:
        fail(f"{photo}: no crop metadata found")
        return
    if as_json:
        click.echo(json.dumps(data, default=str))
        return
    crs = data["crs"]
    click.echo(f"{shown_path(photo)}: crop in {shown_path(data['file'])} ({data['location']}, {'clipcrop' if data['ours'] else 'another tool'})")
    if crs:
        click.echo("  crs (stored frame): " + ", ".join(f"{k[4:].lower()} {v:.4f}" for k, v in crs.items()
                                                         if k != "CropAngle"))
    if "upright" in data:
        click.echo("  upright fractions: " + ", ".join(f"{v:.4f}" for v in data["upright"]))
    ours = data["clipcrop"]
    if ours:
        click.echo(f"  {ours.get('Aspect', '?')} box {ours.get('Box', '?')}  score {ours.get('Score', '?')}  "
                   f"improvement {ours.get('Improvement', '?')}  scorer {ours.get('Scorer', '?')}")
        for e in data["explanation"]:
            click.echo(f"  {e.get('Element')}: {e.get('Change')}")
