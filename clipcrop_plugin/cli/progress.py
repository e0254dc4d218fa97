"""One progress bar for every long command: on stderr, and only when stderr is a terminal.

Pipes, cron jobs and ``--json`` runs get no bar at all, so machine output is never mixed with it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
