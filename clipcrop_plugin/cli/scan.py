"""``clipcrop scan``: one pass over photo folders into the crop database."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from ..candidates import AspectRatio
from ..errors import ClipcropError
from ..safeio import show
from .db import db_option, open_store
from .params import aspect_option, exit_code_for, fail, scorer_options
from .progress import wants_progress


@click.command("scan")
@click.argument("folders", nargs=-1, type=click.Path())
@aspect_option
@scorer_options
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Photos per scorer call [config, 8].")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that decode and score (0: one per core) [config workers, one per core].")
@click.option("--enqueue", is_flag=True,
              help="Put the photos on the task queue for `clipcrop worker`s instead of scoring here (PostgreSQL).")
@click.option("--xmp", "write_xmp", is_flag=True,
              help="Also write each newly scored photo's best crop as XMP (a sidecar; embedded if the config sets embed).")
@click.option("--rescore", is_flag=True,
              help="Re-score the photos already in the database (all, or those under FOLDERS) with the scorer's "
                   "current model version, e.g. after `clipcrop-train personalize --activate`.")
@db_option
def scan(folders: tuple[str, ...], aspects: tuple[AspectRatio, ...], scorer: str, device: str, weights: str | None,
         batch_size: int | None, workers: int | None, enqueue: bool, write_xmp: bool, rescore: bool,
         db: str | None) -> None:
    """Score every new or changed photo under FOLDERS into the database.

    Photos already scored by this scorer and weights are skipped (moved or renamed ones are
    relinked by content); failures are stored with their reason and counted. Without --aspect,
    the configured aspects are used. Exit status 1 when any photo failed, 130 when interrupted
    (run it again to continue).

    \b
    Example:
      clipcrop scan ~/Pictures --aspect 1:1 --aspect 4:5
      clipcrop scan /media/photos --scorer heuristic --xmp
      clipcrop scan --rescore          # after activating a personalized model version
    """
    from ..config import load_settings
    from ..hooks import get_plugin_manager
    from ..jobs import JobSettings
    from ..scan import ScanReport, rescore_library, scan_folders
    from ..scoring.registry import load_scorer
    from ..workers import resolve_workers

    if not folders and not rescore:
        fail("give at least one FOLDER (or --rescore to re-score the photos already in the database)", 2)
    try:
        settings = load_settings()
        job = JobSettings.resolve(settings, aspects=aspects, batch_size=batch_size, write=write_xmp)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    if enqueue:
        _enqueue(folders, db, settings, job)
        return
    store = open_store(db, create=True)
    try:
        try:
            scorer_obj = load_scorer(scorer, settings=settings, device=device, weights=weights)
        except ClipcropError as exc:
            fail(str(exc), exit_code_for(exc))
        plugins = get_plugin_manager()
        pool = {"workers": resolve_workers(workers, settings), "settings": settings, "weights": weights}

        def run(progress: Callable[[int, int, str], None] | None = None) -> ScanReport:
            if rescore:
                return rescore_library(store, scorer_obj, aspects or _stored_aspects(store) or job.aspects,
                                       folders=list(folders), progress=progress, batch_size=job.batch_size,
                                       policy=job.policy, plugins=plugins)
            return scan_folders(store, list(folders), scorer_obj, job.aspects, progress=progress,
                                batch_size=job.batch_size, policy=job.policy, plugins=plugins, **pool)

        if not wants_progress():  # a pipe or cron job gets the summary line only
            report = run()
        else:
            with click.progressbar(length=0, label="scanning", file=sys.stderr, show_pos=True,
                                   item_show_func=lambda p: p and click.format_filename(p, shorten=True)) as bar:
                state = {"done": 0}

                def progress(done: int, total: int, path: str) -> None:
                    bar.length = total
                    bar.update(done - state["done"], path)
                    state["done"] = done

                report = run(progress)
    finally:
        store.close()
    for path, reason in report.failures:
        shown = show(path)
        click.echo(f"failed: {reason}" if shown in reason else f"failed: {shown}: {reason}", err=True)
    for _path, reason in report.metadata_errors:
        click.echo(f"xmp not written: {reason}", err=True)
    click.echo(report.summary())
    if report.interrupted:
        raise SystemExit(130)
    if report.failures:
        raise SystemExit(1)


def _enqueue(folders: tuple[str, ...], db: str | None, settings: object, job: object) -> None:
    from ..store import Store
    from ..store.engine import resolve_url
    from ..taskqueue import enqueue_paths

    try:
        url = resolve_url(db, settings)  # type: ignore[arg-type]
        Store.open(url).close()  # the library schema, so workers and `query` agree on one database
        policy = job.policy  # type: ignore[attr-defined]
        queued, dup = enqueue_paths(url, list(folders), aspects=[a.name for a in job.aspects],  # type: ignore[attr-defined]
                                    xmp=policy.mode, naming=policy.naming)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    click.echo(f"queued {queued} photos" + (f" ({dup} already waiting)" if dup else ""))


def _stored_aspects(store) -> tuple[AspectRatio, ...]:  # type: ignore[no-untyped-def]
    """The ratio sets the library was scored with, so a re-score keeps offering them."""
    from ..api import Library
    from ..candidates import parse_aspect
    from ..config import load_settings

    names = Library(store, load_settings(), scorer="heuristic").aspects()
    return tuple(parse_aspect(a) for a in names if a != "grid")
