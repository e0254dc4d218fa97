"""``clipcrop query``: find photos in the crop database (table, JSON lines or CSV)."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import click

from ..results import configured_keep_margin, is_keep
from ..safeio import show
from ..store import SORTS, PhotoSummary, QueryFilters
from .db import db_option, open_store
from .params import fail
from .text import explain_changes

F = TypeVar("F", bound=Callable[..., Any])
CSV_FIELDS = ("id", "path", "status", "aspect", "rank", "x1", "y1", "x2", "y2", "score", "improvement",
              "explanation", "taken_at", "camera", "error", "suggestion")


def make_filter_options(limit_default: int) -> Callable[[F], F]:
    """The query filters, shared by ``query`` and ``export --query``; listings show
    ``limit_default`` photos unless told otherwise, commands that act on photos do all (0)."""

    def deco(f: F) -> F:
        return _add_filter_options(f, limit_default)

    return deco


def _add_filter_options(f: F, limit_default: int) -> F:
    opts = [
        click.option("--folder", type=click.Path(file_okay=False), help="Photos in this folder or below."),
        click.option("--glob", "path_glob", metavar="PATTERN", help="Shell pattern over the full path, e.g. '*/2023/*.jpg'."),
        click.option("--status", type=click.Choice(["pending", "scored", "failed", "gone"]), help="Photo status."),
        click.option("--scorer", help="Use this scorer's newest run instead of the active one."),
        click.option("--aspect", metavar="W:H", help="Select each photo's best crop of this set (grid, 1:1, ...)."),
        click.option("--min-score", type=float, help="Selected crop scores at least this."),
        click.option("--min-improvement", type=float, help="Selected crop improves on the full frame by at least this."),
        click.option("--enhances", metavar="ELEMENT", help="Selected crop's explanation raises this element (e.g. rule_of_thirds)."),
        click.option("--reduces", metavar="ELEMENT", help="Selected crop's explanation lowers this element."),
        click.option("--labelled/--unlabelled", "labelled", default=None, help="Only photos with / without labels."),
        click.option("--taken-after", type=click.DateTime(), help="Capture time on or after (YYYY-MM-DD)."),
        click.option("--taken-before", type=click.DateTime(), help="Capture time on or before."),
        click.option("--camera", help="Camera make or model contains this text."),
        click.option("--sort", type=click.Choice(SORTS), default="improvement", show_default=True,
                     help="Order: improvement/score (scored photos only, best first), path, taken (newest first), "
                          "uncertain (smallest lead over the runner-up first: where a label teaches most)."),
        click.option("--limit", type=click.IntRange(min=0), default=limit_default, show_default=True,
                     help="At most this many (0 = all)."),
        click.option("--all-files", is_flag=True, help="A RAW + JPEG shot as two rows (default: one, the RAW's)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


filter_options = make_filter_options(50)


def filters_from(folder: str | None, path_glob: str | None, status: str | None, scorer: str | None,
                 aspect: str | None, min_score: float | None, min_improvement: float | None,
                 enhances: str | None, reduces: str | None, labelled: bool | None,
                 taken_after: datetime | None, taken_before: datetime | None, camera: str | None,
                 all_files: bool = False) -> QueryFilters:
    """Build :class:`QueryFilters` from the command-line values (folders made absolute)."""
    from ..store.queries import element_index

    for name in (enhances, reduces):
        if name:
            element_index(name)  # raises ConfigError naming the known elements
    return QueryFilters(
        folder=os.path.abspath(folder) if folder else None, path_glob=path_glob, status=status, scorer=scorer,
        aspect=aspect, min_score=min_score, min_improvement=min_improvement, enhances=enhances, reduces=reduces,
        labelled=labelled, taken_after=taken_after, taken_before=taken_before, camera=camera, all_files=all_files,
    )


def _explain(p: PhotoSummary) -> str:
    if p.crop is None:
        return ""
    return explain_changes(p.crop.explanation, empty="")


def _keep(p: PhotoSummary) -> bool:
    """Whether the photo's suggestion is "keep as is" (its grid crop does not beat the full frame)."""
    return p.crop is not None and is_keep(p.crop.aspect, p.crop.improvement, configured_keep_margin())


def _row(p: PhotoSummary) -> dict[str, Any]:
    c = p.crop
    return {
        "id": p.id, "path": p.path, "status": p.status, "aspect": c.aspect if c else "", "rank": c.rank if c else "",
        "x1": c.box[0] if c else "", "y1": c.box[1] if c else "", "x2": c.box[2] if c else "",
        "y2": c.box[3] if c else "", "score": f"{c.score:.6f}" if c else "",
        "improvement": f"{c.improvement:.6f}" if c else "", "explanation": _explain(p),
        "taken_at": p.taken_at.isoformat() if p.taken_at else "",
        "camera": " ".join(v for v in (p.camera_make, p.camera_model) if v), "error": p.error or "",
        "suggestion": ("keep" if _keep(p) else "crop") if c else "",
    }


def print_table(rows: list[PhotoSummary]) -> None:
    """Aligned text table: one photo per line."""
    click.echo(f"{'id':>6}  {'improve':>8}  {'score':>6}  {'aspect':<6}  {'box':<21}  {'explanation':<44}  path")
    for p in rows:
        c = p.crop
        path = show(p.path) + (f" (+{show(os.path.basename(p.pair_path))})" if p.pair_path and p.pair_role == "raw" else "")
        if c is None:
            click.echo(f"{p.id:>6}  {'':>8}  {'':>6}  {'':<6}  {'':<21}  {p.status + (': ' + p.error if p.error else ''):<44}  {path}")
            continue
        box = "keep as is" if _keep(p) else ",".join(str(v) for v in c.box)
        click.echo(f"{p.id:>6}  {c.improvement:>+8.3f}  {c.score:>6.3f}  {c.aspect:<6}  {box:<21}  {_explain(p):<44}  {path}")


@click.command("query")
@filter_options
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many results first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@db_option
def query(sort: str, limit: int, offset: int, as_json: bool, as_csv: bool, db: str | None, **kw: Any) -> None:
    """List photos from the database with their best crop.

    \b
    Examples:
      clipcrop query --limit 20                      # largest improvement first
      clipcrop query --aspect 1:1 --min-score 0.6 --json
      clipcrop query --enhances rule_of_thirds --folder ~/Pictures/2023 --csv > thirds.csv
      clipcrop query --status failed --sort path
    """
    if as_json and as_csv:
        fail("choose one of --json and --csv", 2)
    store = open_store(db)
    try:
        filters = filters_from(**kw)
        rows = store.query(filters, sort=sort, limit=limit or None, offset=offset)
        total = store.count(filters, sort=sort)
    finally:
        store.close()
    if as_json:
        for p in rows:
            click.echo(json.dumps({**p.to_dict(), "keep": _keep(p)}))
    elif as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for p in rows:
            writer.writerow(_row(p))
    else:
        print_table(rows)
    # On stderr, so JSON and CSV stay clean for pipes; a cut-short listing says how to see all.
    click.echo(shown_line(len(rows), total, offset, limit), err=True)


def shown_line(shown: int, total: int, offset: int, limit: int) -> str:
    """``50 of 186 photos shown (--limit 0 for all)``: how much of the match a listing holds."""
    if total == 0:
        return "no photos match"
    line = f"{shown} of {total} photo{'s' if total != 1 else ''} shown"
    if offset:
        line += f" (from #{offset + 1})"
    if offset + shown < total and limit:
        line += " (--limit 0 for all)"
    return line
