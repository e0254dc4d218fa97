"""Turn watchdog events into hints: ``path -> last_seen``, never work.

A created or modified event says only that a file is *changing*; the copy may go on for
seconds (watchdog #586). So the handler does nothing but note the path and the time; the
stability tracker decides when the file is ready. Deletions and the source side of moves are
noted separately, because a path that disappears must be marked gone, not scored.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from ..photofiles import is_ignored

log = logging.getLogger("clipcrop.daemon")

# What is ignored (hidden and temp names, sidecars, ``@eaDir``, ...) is the shared photo filter's
# (``clipcrop_plugin.photofiles``), so ``clipcrop scan`` skips exactly what the daemon skips.
__all__ = ["HintHandler", "Hints", "is_ignored"]


class Hints:
    """Thread-safe ``path -> last_seen`` for changed files and for vanished ones.

    Repeated events for one path overwrite each other, which is what debounces a burst: a
    file written in 500 chunks is one entry whose time keeps moving forward.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._changed: dict[str, float] = {}
        self._vanished: dict[str, float] = {}
        self._dirs: dict[str, float] = {}
        self.wakeup = threading.Event()

    def changed(self, path: str) -> None:
        """A file appeared or changed at ``path``."""
        with self._lock:
            self._changed[path] = self._clock()
            self._vanished.pop(path, None)
        self.wakeup.set()

    def vanished(self, path: str) -> None:
        """A file at ``path`` was deleted or moved away."""
        with self._lock:
            self._vanished[path] = self._clock()
            self._changed.pop(path, None)
        self.wakeup.set()

    def directory(self, path: str) -> None:
        """A directory appeared, moved or vanished: its contents must be looked at again."""
        with self._lock:
            self._dirs[path] = self._clock()
        self.wakeup.set()

    def take(self) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """Hand over and clear everything noted so far: (changed, vanished, directories)."""
        with self._lock:
            out = (self._changed, self._vanished, self._dirs)
            self._changed, self._vanished, self._dirs = {}, {}, {}
            self.wakeup.clear()
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._changed) + len(self._vanished) + len(self._dirs)


class HintHandler(FileSystemEventHandler):
    """A watchdog handler that only records hints; runs on the observer's thread, so it is cheap."""

    def __init__(self, hints: Hints, root: str, accept: Callable[[str], bool] | None = None) -> None:
        super().__init__()
        self.hints = hints
        self.root = root
        # ``accept`` narrows to photo file names (``photofiles.is_photo_name``); ignored names
        # are always dropped first.
        self.accept = accept or (lambda _p: True)

    def _wanted(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        if is_ignored(p, self.root) or not self.accept(p):
            return None
        return p

    def dispatch(self, event: FileSystemEvent) -> None:  # noqa: D102 - see class docstring
        try:
            self._dispatch(event)
        except Exception:  # an exception here would kill watchdog's dispatcher thread
            log.error("could not handle %s event for %s", event.event_type, event.src_path, exc_info=log.isEnabledFor(logging.DEBUG))

    def _dispatch(self, event: FileSystemEvent) -> None:
        if isinstance(event, (DirCreatedEvent, DirDeletedEvent)):
            self.hints.directory(os.fsdecode(event.src_path))
        elif isinstance(event, DirMovedEvent):
            self.hints.directory(os.fsdecode(event.src_path))
            self.hints.directory(os.fsdecode(event.dest_path))
        elif isinstance(event, FileMovedEvent):
            # Temp-file-then-rename writers: the temp name is ignored, the destination is the photo.
            src = self._wanted(event.src_path)
            if src is not None:
                self.hints.vanished(src)
            dest = self._wanted(event.dest_path)
            if dest is not None:
                self.hints.changed(dest)
        elif isinstance(event, FileDeletedEvent):
            src = self._wanted(event.src_path)
            if src is not None:
                self.hints.vanished(src)
        elif isinstance(event, (FileCreatedEvent, FileModifiedEvent, FileClosedEvent)):
            src = self._wanted(event.src_path)
            if src is not None:
                self.hints.changed(src)
