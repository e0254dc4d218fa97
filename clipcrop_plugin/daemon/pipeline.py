"""The work pipeline: bounded queues, decoder threads, one batch scorer, one database thread.

::

    ready paths -> [paths queue] -> decoders (hash, skip check, decode) -> [batch queue]
                -> scorer (batches of ``batch_size``) -> [db queue] -> database thread

With worker processes (``watch --workers N``, :class:`Pooled`), the decoders only hash and
settle; the scorer thread hands each batch of paths to the process pool
(:class:`clipcrop_plugin.workers.WorkerPool`: decode and score there) and a collector thread
takes the finished batches in order and queues their commits, so the database thread stays the
one writer and the exactly-once rules are unchanged.

The database thread is the only one that touches the store; other threads ask it questions
through futures. A content hash is "claimed" from the moment a decoder hashes it until its
result is committed, so two copies of one photo (or one path hinted twice) are never scored
twice in one run; across runs the store's scoring-run rows say what is done, which is what
makes a restart after ``kill -9`` exactly-once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..batching import gather
from ..errors import ClipcropError
from ..imaging import LoadedImage
from ..results import Suggestion
from .stability import Signature, file_signature

log = logging.getLogger("clipcrop.daemon")

_STOP = object()


class Backend(Protocol):
    """What the pipeline needs from the store and the metadata writer (called on the DB thread)."""

    def already_done(self, path: str, signature: Signature) -> bool:
        """True if this exact file (path, size, mtime) is already scored by the current scorer."""

    def is_scored(self, content_hash: str) -> bool:
        """True if a photo with this content is scored by the current scorer and weights."""

    def relink(self, content_hash: str, path: str, signature: Signature) -> None:
        """``path`` holds content that is already scored: point the store at it, no scoring."""

    def record_batch(self, items: list[tuple[Suggestion, str, Signature]]) -> list[Signature | None]:
        """Store scored photos (one transaction) and write their metadata; returns each file's
        signature afterwards (it changes when metadata is embedded), or ``None`` for unchanged."""

    def record_failure(self, path: str, reason: str, content_hash: str | None, signature: Signature | None) -> None:
        """Store that ``path`` could not be scored, and why."""


class Pooled(Protocol):
    """Scoring in worker processes: ``submit`` a batch of ``(path, content_hash)``, get a handle;
    ``result(handle)`` waits and returns ``path -> Suggestion``; ``close`` stops the processes
    (they start again on the next submit)."""

    workers: int

    def submit(self, photos: list[tuple[str, str]]) -> Any:
        """Start scoring ``photos``; returns a handle for :meth:`result`."""

    def result(self, handle: Any) -> dict[str, Suggestion]:
        """The suggestions of a submitted batch (raises :class:`~clipcrop_plugin.workers.ModelChanged`
        when the workers loaded another model version than the parent)."""

    def close(self, cancel: bool = False) -> None:
        """Stop the worker processes."""


@dataclass
class _Item:
    path: str
    signature: Signature
    content_hash: str = ""
    loaded: LoadedImage | None = None


@dataclass
class Counters:
    """What the status file reports; updated under the pipeline's lock."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=4096))

    def throughput(self, window: float = 60.0) -> float:
        """Photos scored per second over the last ``window`` seconds (or since the first)."""
        now = time.monotonic()
        times = [t for t in self.recent if now - t <= window]
        if not times:
            return 0.0
        return len(times) / max(1.0, now - times[0])


class DBThread:
    """Runs store operations one after another on a single thread, in submission order."""

    def __init__(self, on_error: Callable[[str], None]) -> None:
        self._q: queue.Queue[Any] = queue.Queue()
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name="clipcrop-db", daemon=True)
        self._count_lock = threading.Lock()
        self._pending = 0  # submitted and not finished (a queue's size misses the running job)

    def start(self) -> None:
        self._thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``fn(*args)``; the returned future holds its result or exception."""
        fut: Future[Any] = Future()
        with self._count_lock:
            self._pending += 1
        self._q.put((fut, fn, args))
        return fut

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the DB thread and wait for its result."""
        return self.submit(fn, *args).result()

    def pending(self) -> int:
        """Operations submitted and not yet finished."""
        with self._count_lock:
            return self._pending

    def stop(self, timeout: float) -> None:
        """Finish every queued operation, then end the thread."""
        self._q.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                return
            fut, fn, args = job
            try:
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - reported through the future and the log
                        self._on_error(f"database: {exc}")
                        log.error("database operation %s failed: %s", getattr(fn, "__name__", fn), exc)
                        fut.set_exception(exc)
            finally:
                with self._count_lock:
                    self._pending -= 1


class Pipeline:
    """Decoder threads, one scorer thread and one DB thread around a :class:`Backend`.

    ``load(path)`` decodes a photo (raises :class:`ClipcropError` for a bad one);
    ``score(images)`` turns a batch of decoded photos into :class:`Suggestion` objects in one
    scorer call; ``content_hash(path)`` identifies the content. ``rehint(path)`` is called for a
    file that turned out to be still changing (or that does not decode yet and was modified
    less than ``young_seconds`` ago), ``on_done(path, signature)`` when a path is settled
    (scored, skipped or failed).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        load: Callable[[str], LoadedImage],
        score: Callable[[Sequence[LoadedImage]], list[Suggestion]],
        content_hash: Callable[[str], str],
        batch_size: int = 8,
        decoders: int = 2,
        queue_size: int = 64,
        batch_wait: float = 0.05,
        rehint: Callable[[str], None] | None = None,
        on_done: Callable[[str, Signature], None] | None = None,
        young_seconds: float = 5.0,
        pooled: Pooled | None = None,
        on_model_changed: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.pooled = pooled
        self._on_model_changed = on_model_changed or (lambda: None)
        self.last_active = time.monotonic()
        self.young_seconds = young_seconds
        self._load = load
        self._score = score
        self._hash = content_hash
        self.batch_size = max(1, int(batch_size))
        self.batch_wait = batch_wait
        self._rehint = rehint or (lambda _p: None)
        self._on_done = on_done or (lambda _p, _s: None)
        self.counters = Counters()
        self._lock = threading.Condition()
        self._outstanding = 0
        self._claimed: dict[str, list[str]] = {}  # content hash -> paths waiting behind the first
        self._active_paths: set[str] = set()
        self._paths: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._batches: queue.Queue[Any] = queue.Queue(maxsize=max(2, 2 * self.batch_size))
        self._stopping = threading.Event()
        self.db = DBThread(self.note_error)
        self._decoders = [
            threading.Thread(target=self._decode_loop, name=f"clipcrop-decode-{i}", daemon=True)
            for i in range(max(1, decoders))
        ]
        self._scorer = threading.Thread(target=self._score_loop, name="clipcrop-score", daemon=True)
        # Pooled: batches being scored by the processes, oldest first; two per worker keep every
        # process busy while the parent settles, and a full queue holds the scorer thread back.
        self._inflight: queue.Queue[Any] = queue.Queue(maxsize=2 * max(1, pooled.workers) if pooled else 1)
        self._collector = threading.Thread(target=self._collect_loop, name="clipcrop-collect", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.db.start()
        for t in self._decoders:
            t.start()
        self._scorer.start()
        if self.pooled is not None:
            self._collector.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking work, finish the batch being scored, flush the DB queue, end the threads.

        Paths still queued are released, not lost: nothing was written for them, so the next
        start's scan finds them unscored.
        """
        self._stopping.set()
        deadline = time.monotonic() + timeout
        for _ in self._decoders:
            self._put_nowait_drop(self._paths, _STOP)
        for t in self._decoders:
            t.join(max(0.1, deadline - time.monotonic()))
        self._put_nowait_drop(self._batches, _STOP)
        self._scorer.join(max(0.1, deadline - time.monotonic()))
        if self.pooled is not None:
            # Drain: the batches the processes are scoring are collected and committed; what
            # is still running at the deadline is dropped (nothing was written for it).
            try:
                self._inflight.put(_STOP, timeout=max(0.1, deadline - time.monotonic()))
            except queue.Full:
                pass
            self._collector.join(max(0.1, deadline - time.monotonic()))
            self.pooled.close(cancel=True)
        self.db.stop(max(0.1, deadline - time.monotonic()))

    def _put_nowait_drop(self, q: queue.Queue[Any], item: Any) -> None:
        # Make room for the stop marker by releasing queued work (it is rediscovered on restart).
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    dropped = q.get_nowait()
                except queue.Empty:
                    continue
                if isinstance(dropped, _Item):
                    self._release(dropped)

    # -- intake ------------------------------------------------------------------------------
    def in_flight(self) -> set[str]:
        """Paths between submission and their final database write."""
        with self._lock:
            return set(self._active_paths)

    def free_slots(self) -> int:
        """How many more paths the bounded queue takes right now."""
        return max(0, self._paths.maxsize - self._paths.qsize())

    def submit(self, path: str, signature: Signature, *, block: bool = False) -> bool:
        """Queue a stable path; False if the queue is full (and ``block`` is off) or stopping."""
        if self._stopping.is_set():
            return False
        with self._lock:
            if path in self._active_paths:
                return False
            self._active_paths.add(path)
            self._outstanding += 1
        try:
            self._paths.put(_Item(path, signature), block=block, timeout=None if block else 0)
        except queue.Full:
            self._finish(path)
            return False
        return True

    def use_scoring(self, load: Callable[[str], LoadedImage], score: Callable[[Sequence[LoadedImage]], list[Suggestion]],
                    pooled: Pooled | None) -> None:
        """Score with new functions (another model version); only while nothing is in flight."""
        if pooled is not None and self.pooled is None:
            raise ValueError("a pipeline started without worker processes cannot switch to them")
        self._load, self._score, self.pooled = load, score, pooled
        self.last_active = time.monotonic()

    def release_idle_workers(self, idle_seconds: float) -> bool:
        """Stop the worker processes after ``idle_seconds`` without work (an idle daemon should
        not hold N scorers in memory); the next photo starts them again. True if stopped."""
        if self.pooled is None or self.depth() or time.monotonic() - self.last_active < idle_seconds:
            return False
        self.pooled.close()
        self.last_active = float("inf")  # until the next batch: closed already
        return True

    def depth(self) -> int:
        """Paths submitted and not yet settled."""
        with self._lock:
            return self._outstanding

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted path is settled; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._outstanding:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
            return True

    def _finish(self, path: str) -> None:
        with self._lock:
            self._active_paths.discard(path)
            self._outstanding -= 1
            self._lock.notify_all()

    def note_error(self, message: str) -> None:
        """Remember ``message`` as the last error (shown by ``clipcrop status``)."""
        with self._lock:
            self.counters.last_error = message
            self.counters.last_error_at = time.time()

    # -- decoders ----------------------------------------------------------------------------
    def _decode_loop(self) -> None:
        while True:
            item = self._paths.get()
            if item is _STOP:
                return
            if self._stopping.is_set():
                self._finish(item.path)  # released: the next start picks it up
                continue
            try:
                self._decode(item)
            except Exception as exc:  # noqa: BLE001 - one photo must never stop the daemon
                log.error("unexpected error preparing %s: %s", item.path, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                self.note_error(f"{item.path}: {exc}")
                self._release(item)

    def _decode(self, item: _Item) -> None:
        if self.db.call(self.backend.already_done, item.path, item.signature):
            self._settle_skipped(item)
            return
        try:
            item.content_hash = self._hash(item.path)
        except (OSError, ClipcropError) as exc:
            if file_signature(item.path) is None:
                self._release(item)  # vanished mid-way; its delete event follows
            else:
                self._fail(item, str(exc))  # there but unreadable (permissions, I/O error)
            return
        with self._lock:
            waiting = self._claimed.get(item.content_hash)
            if waiting is not None:
                # Another path with the same content is being scored right now: wait for it,
                # then take the store's "already scored" route.
                waiting.append(item.path)
                return
            self._claimed[item.content_hash] = []
        if self.db.call(self.backend.is_scored, item.content_hash):
            self.db.call(self.backend.relink, item.content_hash, item.path, item.signature)
            self._settle_skipped(item)
            return
        if self.pooled is not None:
            self._to_scorer(item)  # a worker process decodes it; the collector checks the file again
            return
        try:
            item.loaded = self._load(item.path)
        except ClipcropError as exc:
            young = time.time() - item.signature[1] < self.young_seconds
            if young or file_signature(item.path) != item.signature:
                # Probably not broken, just not finished: a writer is still at it, or paused
                # longer than the stability window (a slow network copy). Look again later;
                # once the file has been left alone for young_seconds, a failure is a failure.
                self._rehint(item.path)  # before the release, so the work never looks finished
                self._release(item)
                return
            self._fail(item, str(exc))
            return
        if file_signature(item.path) != item.signature:
            # Rewritten while we hashed and decoded: the pixels may not match the hash.
            item.loaded = None
            self._rehint(item.path)
            self._release(item)
            return
        self._to_scorer(item)

    def _to_scorer(self, item: _Item) -> None:
        while not self._stopping.is_set():
            try:
                self._batches.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        self._release(item)

    # -- scorer ------------------------------------------------------------------------------
    def _score_loop(self) -> None:
        while True:
            first = self._batches.get()
            if first is _STOP:
                return
            batch, stop_after = gather(self._batches, first, self.batch_size, self.batch_wait, _STOP)
            self._score_batch(batch)
            if stop_after:
                return

    def _score_batch(self, batch: list[_Item]) -> None:
        self.last_active = time.monotonic()
        if self.pooled is not None:
            try:
                handle = self.pooled.submit([(it.path, it.content_hash) for it in batch])
            except Exception as exc:  # noqa: BLE001 - e.g. the pool cannot start a process
                log.error("cannot hand %d photo(s) to the worker processes: %s", len(batch), exc)
                self.note_error(f"worker processes: {exc}")
                for it in batch:
                    self._rehint(it.path)  # tried again after the window, never lost
                    self._release(it)
                return
            self._inflight.put((handle, batch))  # blocks while every worker has two batches
            return
        images = [it.loaded for it in batch]
        try:
            results = self._score(images)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            if len(batch) == 1:
                self._fail(batch[0], f"scoring failed: {exc}")
                return
            # One bad photo must not sink its batch-mates: score them one by one.
            log.warning("batch of %d failed (%s); scoring one by one", len(batch), exc)
            for it in batch:
                self._score_batch([it])
            return
        good: list[tuple[_Item, Suggestion]] = []
        for it, sug in zip(batch, results):
            it.loaded = None  # free the pixels now, not when the DB catches up
            if sug.ok:
                good.append((it, sug))
            else:
                self._fail(it, sug.error or "could not be scored")
        if good:
            # One transaction for the whole batch: the store's bulk path.
            self.db.submit(self._commit, good)

    # -- collector (pooled) ------------------------------------------------------------------
    def _collect_loop(self) -> None:
        from ..workers import ModelChanged

        assert self.pooled is not None
        while True:
            job = self._inflight.get()
            if job is _STOP:
                return
            handle, batch = job
            try:
                results = self.pooled.result(handle)
            except ModelChanged as exc:
                # The processes loaded a newer model version than this daemon scores with: score
                # nothing with it; the photos wait until the service has switched versions.
                log.info("%s; %d photo(s) wait for the switch", exc, len(batch))
                self._on_model_changed()
                for it in batch:
                    self._rehint(it.path)
                    self._release(it)
                continue
            except Exception as exc:  # noqa: BLE001 - the collector must outlive any one batch
                log.error("worker batch failed: %s", exc)
                results = {}
            self.last_active = time.monotonic()
            self._settle_results(batch, results)

    def _settle_results(self, batch: list[_Item], results: dict[str, Suggestion]) -> None:
        """What the decoder's and scorer's checks do in-process, for a batch scored elsewhere."""
        good: list[tuple[_Item, Suggestion]] = []
        for it in batch:
            sug = results.get(it.path)
            if file_signature(it.path) != it.signature:
                # Rewritten (or removed) while a worker read it: the scores may not match the hash.
                self._rehint(it.path)
                self._release(it)
            elif sug is None:
                self._fail(it, "not scored")
            elif sug.ok:
                good.append((it, sug))
            elif time.time() - it.signature[1] < self.young_seconds:
                # Probably still arriving (see _decode): look again once it has been left alone.
                self._rehint(it.path)
                self._release(it)
            else:
                self._fail(it, sug.error or "could not be scored")
        if good:
            self.db.submit(self._commit, good)

    # -- settling (DB thread) ----------------------------------------------------------------
    def _commit(self, good: list[tuple[_Item, Suggestion]]) -> None:
        try:
            finals = self.backend.record_batch([(sug, it.content_hash, it.signature) for it, sug in good])
        except Exception:
            for it, _ in good:
                self._release(it)
            raise
        with self._lock:
            now = time.monotonic()
            self.counters.done += len(good)
            self.counters.recent.extend([now] * len(good))
        for (it, sug), final in zip(good, finals):
            best = sug.best()
            log.debug("scored %s (best %s %+.3f)", it.path, best.aspect if best else "-", best.improvement if best else 0.0)
            self._on_done(it.path, final or it.signature)
            self._release(it)
        log.info("scored %d photo(s)%s", len(good), f", {self.depth()} waiting" if self.depth() else "")

    def _fail(self, item: _Item, reason: str) -> None:
        line = reason if item.path in reason else f"{item.path}: {reason}"
        log.warning("cannot score %s", line)
        self.note_error(line)
        self.db.submit(self._commit_failure, item, reason)

    def _commit_failure(self, item: _Item, reason: str) -> None:
        try:
            self.backend.record_failure(item.path, reason, item.content_hash or None, item.signature)
        finally:
            with self._lock:
                self.counters.failed += 1
            self._on_done(item.path, item.signature)
            self._release(item)

    def _settle_skipped(self, item: _Item) -> None:
        with self._lock:
            self.counters.skipped += 1
        self._on_done(item.path, item.signature)
        self._release(item)

    def _release(self, item: _Item) -> None:
        """Free ``item``'s claim on its content; paths that waited behind it go round again."""
        waiting: list[str] = []
        if item.content_hash:
            with self._lock:
                waiting = self._claimed.pop(item.content_hash, None) or []
        self._finish(item.path)
        for path in waiting:
            sig = file_signature(path)
            if sig is None or self._stopping.is_set():
                self._finish(path)
                continue
            # The waiter keeps its slot (so wait_idle stays honest) and goes back in the queue
            # from a helper thread: this may run on the DB thread, which must never block.
            threading.Thread(target=self._requeue, args=(_Item(path, sig),), daemon=True).start()

    def _requeue(self, item: _Item) -> None:
        while not self._stopping.is_set():
            try:
                self._paths.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        self._finish(item.path)
