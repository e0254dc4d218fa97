"""One progress bar for every long command: on stderr, and only when stderr is a terminal.

Pipes, cron jobs and ``--json`` runs get no bar at all, so machine output is never mixed with it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click


def wants_progress(quiet: bool = False) -> bool:
    """Whether a bar should be drawn: stderr is a terminal and the command is not in machine mode."""
    return not quiet and sys.stderr.isatty()


@contextmanager
def progress_bar(total: int, label: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """``with progress_bar(n, "exporting") as step: ... step(path)`` — one step per item."""
    if not wants_progress(quiet) or total <= 1:
        yield lambda _item: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True,
                           item_show_func=lambda item: item[-40:] if item else None) as bar:
        yield lambda item: bar.update(1, item)


STAGE_LABELS = {"backup": "backing up", "migrate": "migrating"}


@contextmanager
def stage_bars(*, quiet: bool = False) -> Iterator[Callable[[str, int, int], None] | None]:
    """``progress(stage, done, total)`` drawing one bar per stage in turn (``db upgrade``: the
    backup's pages, then the revisions), or None when no bar should be drawn."""
    if not wants_progress(quiet):
        yield None
        return
    bars: dict[str, Any] = {}
    done_of: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.render_finish()
            bar = bars[stage] = click.progressbar(length=max(1, total), label=STAGE_LABELS.get(stage, stage),
                                                  file=sys.stderr, show_pos=True)
            bar.render_progress()
            done_of[stage] = 0
        bar.update(done - done_of[stage])
        done_of[stage] = done

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.render_finish()
