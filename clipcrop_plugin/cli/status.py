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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status document as JSON.")
def status(as_json: bool) -> None:
    """Show whether `clipcrop watch` is running, its folders, queue and counts.

    Exit status: 0 running, 3 not running or never started (like `systemctl status`), 1 the
    status file cannot be read.

    \b
    Example:
      clipcrop status
      clipcrop status --json | jq .queue_depth
    """
    from ..daemon.status import read_status, status_path

    path = status_path()
    if not path.exists():
        # Never started here is "not running", not a failure: scripts test `clipcrop status` for 3.
        if as_json:
            click.echo(json.dumps({"running": False, "never_started": True, "status_file": str(path)}))
        else:
            click.echo(f"clipcrop watch: not running (never started with this data folder; no {path})")
        raise SystemExit(3)
    try:
        doc = read_status()
    except ClipcropError as exc:
        if as_json:
            click.echo(json.dumps({"running": None, "error": str(exc), "status_file": str(path)}))
            raise SystemExit(1) from None
        fail(str(exc))
    click.echo(json.dumps(doc, indent=1, sort_keys=True) if as_json else format_status(doc))
    if not doc.get("running"):
        raise SystemExit(3)
