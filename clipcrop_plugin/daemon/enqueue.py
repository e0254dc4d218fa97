"""``watch --enqueue``: settled photos go on the task queue instead of being scored here.

The service's settle/reconcile logic (hints, the stability window, moves, gone, offline) is the
same for both modes; only what happens to a stable photo differs. :class:`EnqueueSink` has the
:class:`~.pipeline.Pipeline` interface the service drives: a stable path that the library already
has (same size and mtime, scored or failed) is settled at once, the others are put on the queue
(:class:`clipcrop_plugin.taskqueue.Enqueuer`) in batches, where ``clipcrop worker`` processes
score them with the same exactly-once rules as ``clipcrop scan``. Gone/offline bookkeeping
still runs on the sink's one database thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..batching import gather
from ..errors import ClipcropError
from .pipeline import Counters, DBThread
from .stability import Signature

log = logging.getLogger("clipcrop.daemon")

_STOP = object()
RETRY_SECONDS = 5.0  # after the queue database could not be reached


class EnqueueSink:
    """Queue stable photos for ``clipcrop worker`` (batches of up to ``batch_size`` paths)."""

    def __init__(self, backend: Any, enqueuer: Any, *, batch_size: int = 500, batch_wait: float = 0.1,
                 queue_size: int = 1024, on_done: Callable[[str, Signature], None] | None = None) -> None:
        self.backend, self.enqueuer = backend, enqueuer
        self.batch_size, self.batch_wait = max(1, batch_size), batch_wait
        self._on_done = on_done or (lambda _p, _s: None)
        self.counters = Counters()
        self.pooled = None
        self._lock = threading.Condition()
        self._active: set[str] = set()
        self._paths: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._stopping = threading.Event()
        self.db = DBThread(self.note_error)
        self._thread = threading.Thread(target=self._run, name="clipcrop-enqueue", daemon=True)

    # -- the Pipeline interface the service uses ---------------------------------------------
    def start(self) -> None:
        self.db.start()
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Queue what was handed over (within ``timeout``), then stop; the rest is found again
        by the next start's scan (nothing was recorded for it)."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        try:
            self._paths.put(_STOP, timeout=max(0.1, deadline - time.monotonic()))
        except queue.Full:
            pass
        self._thread.join(max(0.1, deadline - time.monotonic()))
        self.db.stop(max(0.1, deadline - time.monotonic()))
        self.enqueuer.close()

    def submit(self, path: str, signature: Signature, *, block: bool = False) -> bool:
        """Hand over a stable path; False when it is already handed over, the queue is full or stopping."""
        if self._stopping.is_set():
            return False
        with self._lock:
            if path in self._active:
                return False
            self._active.add(path)
        try:
            self._paths.put((path, signature), block=block)
        except queue.Full:
            self._finish(path)
            return False
        return True

    def free_slots(self) -> int:
        return max(0, self._paths.maxsize - self._paths.qsize())

    def in_flight(self) -> set[str]:
        with self._lock:
            return set(self._active)

    def depth(self) -> int:
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
            return True

    def release_idle_workers(self, idle_seconds: float) -> bool:
        return False  # no worker processes here

    def note_error(self, message: str) -> None:
        with self._lock:
            self.counters.last_error = message
            self.counters.last_error_at = time.time()

    # -- the enqueue thread ----------------------------------------------------------------
    def _finish(self, path: str) -> None:
        with self._lock:
            self._active.discard(path)
            self._lock.notify_all()

    def _run(self) -> None:
        while True:
            first = self._paths.get()
            if first is _STOP:
                return
            batch, stop_after = gather(self._paths, first, self.batch_size, self.batch_wait, _STOP)
            try:
                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one batch
                log.error("cannot queue %d photo(s): %s", len(batch), exc)
                self.note_error(f"queue: {exc}")
                for path, _sig in batch:
                    self._finish(path)
            if stop_after:
                return

    def _process(self, batch: list[tuple[str, Signature]]) -> None:
        send: list[tuple[str, Signature]] = []
        for path, sig in batch:
            if self.db.call(self.backend.handled_since_changed, path, sig):
                with self._lock:
                    self.counters.skipped += 1
                self._on_done(path, sig)
                self._finish(path)
            else:
                send.append((path, sig))
        if not send:
            return
        warned = False
        while True:
            try:
                queued, waiting = self.enqueuer.put([p for p, _s in send])
                break
            except ClipcropError as exc:
                if not warned:  # one line per outage, not one per retry
                    log.error("%s; retrying every %.0f s", exc, RETRY_SECONDS)
                    warned = True
                self.note_error(str(exc))
                if self._stopping.wait(RETRY_SECONDS):
                    for path, _sig in send:
                        self._finish(path)  # not queued: the next start's scan finds them again
                    return
        now = time.monotonic()
        with self._lock:
            self.counters.done += queued
            self.counters.skipped += waiting
            self.counters.recent.extend([now] * queued)
        log.info("queued %d photo(s)%s", queued, f" ({waiting} already waiting)" if waiting else "")
        for path, sig in send:
            self._on_done(path, sig)
            self._finish(path)
