"""``clipcrop worker``: score photos from the task queue (any machine that reaches the photos)."""

from __future__ import annotations

import logging

import click

from ..errors import ClipcropError
from .db import db_option
from .params import exit_code_for, fail, scorer_options


@click.command("worker")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Jobs taken at once; they are scored as one batch.")
@scorer_options
@click.option("--path-map", "path_map", multiple=True, metavar="LIBRARY=LOCAL",
              help="Read photos the library knows under LIBRARY from LOCAL (repeatable) [config path_map].")
@click.option("--once", is_flag=True, help="Score what is queued, then exit (for cron and tests).")
@click.option("--stalled-after", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Seconds without a heartbeat after which a worker's jobs are queued again.")
@click.option("--heartbeat", type=click.FloatRange(min=0.5), default=5.0, show_default=True,
              help="Seconds between this worker's heartbeats.")
@db_option
def worker(concurrency: int, scorer: str, device: str, weights: str | None, path_map: tuple[str, ...], once: bool,
           stalled_after: float, heartbeat: float, db: str | None) -> None:
    """Score photos put on the queue by `clipcrop scan --enqueue` (the library must be in PostgreSQL).

    Run one per machine (or several); each records through the same path as `clipcrop scan`, so
    a photo is scored once however many workers run. SIGTERM finishes the current batch (at
    most ~15 s); a worker killed outright has its jobs queued again by the others after
    --stalled-after seconds, or by itself when restarted.

    \b
    Example:
      clipcrop worker --db postgresql+psycopg://clip@nas/photos --path-map /volume1/photo=/mnt/photo
      clipcrop worker --scorer clipcropping --device cuda --concurrency 32
    """
    from ..config import load_settings
    from ..hooks import get_plugin_manager
    from ..scoring.registry import load_scorer
    from ..store import Store
    from ..store.engine import resolve_url
    from ..taskqueue import PathMap, conninfo, run_worker

    log = logging.getLogger("clipcrop")
    if log.level > logging.INFO or log.level == logging.NOTSET:
        log.setLevel(logging.INFO)  # a worker says what it is doing
    try:
        settings = load_settings()
        url = resolve_url(db, settings)
        conninfo(url)
        mapping = PathMap.parse(list(path_map) or settings.path_map)
        store = Store.open(url)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    try:
        scorer_obj = load_scorer(scorer, settings=settings, device=device, weights=weights)
        w = run_worker(url, scorer_obj, store, concurrency=concurrency, once=once, path_map=mapping,
                       plugins=get_plugin_manager(), heartbeat=heartbeat, stalled_after=stalled_after,
                       settings=settings)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    finally:
        store.close()
    click.echo(f"worker {w.name}: {w.done} scored, {w.skipped} already done, {w.failed} failed")
