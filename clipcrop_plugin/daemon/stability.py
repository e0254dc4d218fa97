"""Decide when a changed file is complete enough to score.

A file is *stable* once no event has touched it for ``window`` seconds and its size and
mtime are what they were at the last event (chokidar's ``awaitWriteFinish``; paperless-ngx's
wait-unmodified loop). Whether it also *decodes* is checked by the decoder thread, which is
the only one that reads pixels.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# (size, st_mtime). The float st_mtime, not st_mtime_ns / 1e9: the two can differ in the last
# bit, and the store compares against what ``clipcrop scan`` saved, which is st_mtime.
Signature = tuple[int, float]


def file_signature(path: str) -> Signature | None:
    """``(size, mtime)`` of a regular file, or ``None`` if it is missing or not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime)


@dataclass
class _Entry:
    last_seen: float
    signature: Signature | None


class StabilityTracker:
    """Paths waiting to settle. Not thread-safe: one dispatcher thread owns it.

    ``note(path)`` records a change (and re-arms the window); ``due()`` returns the paths that
    are quiet and unchanged, removing them. A path that changed since it was noted is re-armed
    instead, so a file written in chunks comes out once, after its last chunk.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = max(0.0, float(window))
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def note(self, path: str, seen_at: float | None = None, *, settled: bool = False) -> None:
        """Record that ``path`` changed at ``seen_at`` (default: now).

        ``settled=True`` is for files found by a scan whose mtime is already older than the
        window: they skip the wait (a backlog of 10,000 photos must not take 10,000 windows).
        """
        now = self._clock() if seen_at is None else seen_at
        if settled:
            now -= self.window
        self._entries[path] = _Entry(now, file_signature(path))

    def discard(self, path: str) -> None:
        """Stop tracking ``path`` (it vanished)."""
        self._entries.pop(path, None)

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def due(self, limit: int | None = None, skip: Iterable[str] = ()) -> list[tuple[str, Signature]]:
        """Pop up to ``limit`` stable ``(path, signature)``; missing files are dropped, changed
        ones re-armed, paths in ``skip`` (being processed) left waiting."""
        now = self._clock()
        skip_set = set(skip)
        ready: list[tuple[str, Signature]] = []
        for path, entry in list(self._entries.items()):
            if limit is not None and len(ready) >= limit:
                break
            if path in skip_set or now - entry.last_seen < self.window:
                continue
            sig = file_signature(path)
            if sig is None:
                # Gone (a delete event will say so) or not a regular file: nothing to score.
                del self._entries[path]
            elif sig != entry.signature:
                # Still being written, but the event that said so has not arrived (network
                # shares, polling observer): start the window again from now.
                self._entries[path] = _Entry(now, sig)
            else:
                del self._entries[path]
                ready.append((path, sig))
        return ready
