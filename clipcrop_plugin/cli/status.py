"""``clipcrop status``: is a daemon running, and what is it doing."""

from __future__ import annotations

import json
import time

import click

from ..errors import ClipcropError
from .params import fail


def format_status(doc: dict) -> str:  # type: ignore[type-arg]
    """The human-readable form of a status document (see :func:`~clipcrop_plugin.daemon.status.read_status`)."""
    running = doc.get("running")
    lines = [
        f"clipcrop watch: {'running' if running else 'not running'} (pid {doc.get('pid')}, "
        f"{'since' if running else 'last started'} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(doc.get('started_at') or 0))})"
    ]
    for f in doc.get("folders", []):
        lines.append(f"  folder  {f.get('path')}  ({f.get('observer')})")
    lines.append(
        f"  queue {doc.get('queue_depth', 0)}  done {doc.get('done', 0)}  unchanged {doc.get('skipped', 0)}"
        f"  failed {doc.get('failed', 0)}  {doc.get('throughput', 0.0):.2f} photos/s"
    )
    if doc.get("last_error"):
        lines.append(f"  last error: {doc['last_error']}")
    if running and doc.get("status_age_s", 0) > 10:
        lines.append(f"  warning: status not updated for {doc['status_age_s']:.0f} s (daemon stuck?)")
    return "\n".join(lines)


def format_queue(doc: dict) -> str:  # type: ignore[type-arg]
    """The task queue part of ``clipcrop status`` (see :func:`clipcrop_plugin.taskqueue.queue_status`)."""
    if doc.get("error"):
        return f"task queue: {doc['error']}"
    lines = [
        f"task queue {doc.get('queue')}: {doc.get('todo', 0)} waiting, {doc.get('doing', 0)} running,"
        f" {doc.get('succeeded', 0)} done, {doc.get('failed', 0)} failed; workers seen {doc.get('workers', 0)}"
        + (f" (+{doc['workers_stale']} silent)" if doc.get("workers_stale") else "")
    ]
    for f in doc.get("last_failures", []):
        lines.append(f"  failed: {f.get('reason')} (worker {f.get('worker')})")
    return "\n".join(lines)


def _queue_doc(db: str | None) -> dict | None:  # type: ignore[type-arg]
    """The queue status when the library is in PostgreSQL and holds a queue; None otherwise."""
    from ..store.engine import resolve_url

    try:
        url = resolve_url(db)
    except ClipcropError:
        return None
    if not url.startswith("postgresql"):
        return None
    try:
        from ..taskqueue import queue_status

        doc = queue_status(url)
    except ClipcropError as exc:
        return {"error": str(exc)}
    return doc if doc.get("installed") else None


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
@click.option("--db", "db", default=None, metavar="URL",
              help="Library database whose task queue to show (default: $CLIPCROP_DB, config); PostgreSQL only.")
def status(as_json: bool, db: str | None) -> None:
    """Show whether `clipcrop watch` is running, its folders, queue and counts.

    With the library in PostgreSQL, also the task queue of `clipcrop worker`s: jobs waiting,
    running, done and failed (with the last failures' reasons) and the workers seen.

    Exit status: 0 running, 3 not running or never started (like `systemctl status`), 1 the
    status file cannot be read.

    \b
    Example:
      clipcrop status
      clipcrop status --json | jq .queue_depth
    """
    from ..daemon.status import read_status, status_path

    path = status_path()
    queue_doc = _queue_doc(db)
    if not path.exists():
        # Never started here is "not running", not a failure: scripts test `clipcrop status` for 3.
        if as_json:
            doc = {"running": False, "never_started": True, "status_file": str(path)}
            if queue_doc is not None:
                doc["queue"] = queue_doc
            click.echo(json.dumps(doc))
        else:
            click.echo(f"clipcrop watch: not running (never started with this data folder; no {path})")
            if queue_doc is not None:
                click.echo(format_queue(queue_doc))
        raise SystemExit(3)
    try:
        doc = read_status()
    except ClipcropError as exc:
        if as_json:
            click.echo(json.dumps({"running": None, "error": str(exc), "status_file": str(path)}))
            raise SystemExit(1) from None
        fail(str(exc))
    if queue_doc is not None:
        doc["queue"] = queue_doc
    click.echo(json.dumps(doc, indent=1, sort_keys=True) if as_json else format_status(doc))
    if queue_doc is not None and not as_json:
        click.echo(format_queue(queue_doc))
    if not doc.get("running"):
        raise SystemExit(3)
