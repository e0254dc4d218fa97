"""``clipcrop export``: cropped copies of photos (EXIF kept, orientation reset)."""

from __future__ import annotations

from typing import Any

import click

from ..errors import ClipcropError
from ..safeio import show
from .db import db_option, open_store
from .params import fail
from .progress import progress_bar
from .query import filters_from, make_filter_options, shown_line


@click.command("export")
@click.argument("photos", nargs=-1)
@click.option("--query", "use_query", is_flag=True, help="Export the photos the filter options select.")
@make_filter_options(0)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Folder for the copies.")
@click.option("--max-size", type=click.IntRange(min=16), default=None, help="Longest side of a copy, in pixels.")
@db_option
def export(photos: tuple[str, ...], use_query: bool, out: str, max_size: int | None, sort: str, limit: int,
           db: str | None, **kw: Any) -> None:
    """Write cropped copies of PHOTOS (paths or ids), or of the photos --query selects.

    The best stored crop is used (of --aspect when given). The original is never modified and
    no existing file is overwritten (a new name is picked). Exit status 1 if any photo failed.

    \b
    Examples:
      clipcrop export IMG_0042.jpg --out ~/crops --aspect 1:1
      clipcrop export --query --min-improvement 0.05 --out ~/crops --max-size 2048   # all that match
    """
    if bool(photos) == use_query:
        fail("give PHOTO arguments or --query (with filter options), not both or neither", 2)
    from ..export import export_from_store

    store = open_store(db)
    failures = 0
    try:
        if use_query:
            filters = filters_from(**kw)
            rows = store.query(filters, sort=sort, limit=limit or None)
            targets: list[str | int] = [p.id for p in rows if p.crop is not None]
            click.echo(f"exporting: {shown_line(len(rows), store.count(filters, sort=sort), 0, limit)}", err=True)
            if len(targets) < len(rows):
                click.echo(f"note: {len(rows) - len(targets)} matching photos have no stored crop", err=True)
        else:
            targets = list(photos)
        with progress_bar(len(targets), "exporting") as step:
            for photo in targets:
                step(str(photo))
                try:
                    res = export_from_store(store, photo, out, aspect=kw.get("aspect"), max_size=max_size)
                except ClipcropError as exc:
                    failures += 1
                    click.echo(f"error: {exc}", err=True)
                    continue
                click.echo(f"{show(res.source)} -> {show(res.path)} ({res.width}x{res.height})")
                if res.exif_note:
                    click.echo(f"note: {res.path}: {res.exif_note}", err=True)
    finally:
        store.close()
    click.echo(f"{len(targets) - failures} exported, {failures} failed", err=True)
    if failures:
        raise SystemExit(1)
