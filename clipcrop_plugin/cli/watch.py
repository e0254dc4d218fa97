"""``clipcrop watch``: the folder daemon (a thin shell over :class:`~clipcrop_plugin.daemon.WatchService`)."""

from __future__ import annotations

import logging
import signal
from typing import Any

import click

from ..candidates import AspectRatio
from ..errors import ClipcropError
from .params import aspect_option, exit_code_for, fail


@click.command()
@click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--scorer", default=None, help="Scorer name: auto, heuristic, clipcropping, zeroshot or a plugin's (default: config, else auto).")
@aspect_option
@click.option("--embed/--sidecar", "embed", default=None, help="Embed the crop in JPEG/PNG files instead of writing .xmp sidecars.")
@click.option("--poll", is_flag=True, default=None, help="Use the polling observer (network shares: NFS, SMB, sshfs).")
@click.option("--once", is_flag=True, help="Scan and score what is there, then exit (for cron and tests).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="CLIP weights or a clipcrop checkpoint.")
@click.option("--device", default=None, help="Where a CLIP scorer runs: auto, cpu, cuda, cuda:1, mps.")
@click.option("--db", "db_url", default=None, help="Database URL or SQLite file (default: $CLIPCROP_DB, config, data folder).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Processes that decode and score (0: one per core; 1: this process) [config workers, one per core].")
@click.option("--enqueue", is_flag=True,
              help="Put settled photos on the task queue for `clipcrop worker`s instead of scoring here (PostgreSQL).")
def watch(
    folders: tuple[str, ...],
    scorer: str | None,
    aspects: tuple[AspectRatio, ...],
    embed: bool | None,
    poll: bool | None,
    once: bool,
    weights: str | None,
    device: str | None,
    db_url: str | None,
    workers: int | None,
    enqueue: bool,
) -> None:
    """Watch photo folders and score every new photo once (the daemon).

    Scans what is there (skipping photos already scored), then watches. A photo is scored once
    it is completely written; moved photos keep their scores, deleted ones are marked gone, a
    folder that disappears is marked offline. Stop with SIGTERM or Ctrl-C; `clipcrop status`
    shows what it is doing. Settings (stable_seconds, rescan_seconds, batch_size, ...) come from
    the config file.

    \b
    Example:
      clipcrop watch ~/Pictures /mnt/nas/photos --poll --aspect 4:5
      clipcrop watch ~/Pictures --once          # one pass, for cron
      clipcrop watch /volume1/photo --enqueue --db postgresql+psycopg://clip@nas/photos

    A newly activated model version (`clipcrop models use`, `clipcrop-train personalize
    --activate`) is picked up within seconds: photos are re-scored with it, the earlier
    versions' suggestions stay in the database.

    With --once the exit status is 1 when a photo could not be scored (each one is logged
    with its reason, and recorded in the database).
    """
    from ..daemon.service import WatchService

    log = logging.getLogger("clipcrop")
    if log.level > logging.INFO or log.level == logging.NOTSET:
        log.setLevel(logging.INFO)  # a daemon says what it is doing (one line per event)
    from .db import check_db_location

    try:
        check_db_location(db_url, create=True)
        service = WatchService(
            folders,
            scorer=scorer,
            aspects=[a.name for a in aspects] or None,
            embed=embed,
            poll=poll or None,
            weights=weights,
            device=device,
            db_url=db_url,
            workers=workers,
            enqueue=enqueue,
        )
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
        return

    def _stop(signum: int, _frame: Any) -> None:
        logging.getLogger("clipcrop.daemon").info("received %s, stopping", signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if once:
            snap = service.run_once()
            verb = "queued" if enqueue else "scored"
            click.echo(f"{snap['done']} {verb}, {snap['skipped']} unchanged, {snap['failed']} failed")
            if snap["failed"]:
                raise SystemExit(1)  # like `clipcrop scan`: each failure was logged with its reason
            return
        service.start()
        service.wait()
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    except OSError as exc:
        fail(f"cannot watch: {exc}")
