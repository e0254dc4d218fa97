"""``WatchService``: scan, then watch; the object ``clipcrop watch`` and tests drive.

One dispatcher thread owns the stability tracker: it turns hints into tracked paths, hands
stable ones to the pipeline, marks vanished ones gone, notices folders that go offline and
come back, runs the periodic reconcile scan and writes the status file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from ..errors import ConfigError
from .events import HintHandler, Hints, is_ignored
from .observer import Watcher
from .pipeline import Pipeline
from .stability import Signature, StabilityTracker, file_signature
from .status import DaemonLock, status_path, write_status

log = logging.getLogger("clipcrop.daemon")


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class WatchService:
    """Watch ``folders`` and score every photo in them exactly once.

    Typical use::

        svc = WatchService(["~/Pictures"], settings)
        svc.start()          # opens the store, loads the scorer, scans, starts watching
        svc.wait_idle(60)    # (tests) until nothing is pending
        svc.stop()           # finish the current batch, flush, exit

    ``run_once()`` scans and scores what is there, then returns (``--once``, cron).
    """

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]],
        settings: Settings | None = None,
        *,
        scorer: str | None = None,
        aspects: Sequence[str] | None = None,
        embed: bool | None = None,
        poll: bool | None = None,
        weights: str | None = None,
        device: str | None = None,
        db_url: str | None = None,
        decoders: int | None = None,
        poll_interval: float = 5.0,
        status_file: Path | None = None,
        workers: int | None = None,
        enqueue: bool = False,
    ) -> None:
        """Arguments left ``None`` come from ``settings`` (default: the config file).

        ``poll_interval``: seconds between the polling observer's snapshots (``--poll``, or a
        tree that fell back to polling); each one stats the whole tree, so keep it modest on
        network shares. ``status_file``: default ``<data dir>/daemon-status.json``; the lock file
        sits next to it. ``decoders``: decoder threads (default: CPUs, at most 4). ``workers``:
        processes that decode and score (default: the ``workers`` setting, 0 = one per core; 1
        scores in this process). ``enqueue``: put settled photos on the task queue (the library
        in PostgreSQL) for ``clipcrop worker`` instead of scoring them here.
        """
        if not folders:
            raise ConfigError("no folder to watch")
        self.settings = settings or load_settings()
        s = self.settings
        self.folders = [os.path.abspath(os.path.expanduser(os.fspath(f))) for f in folders]
        for f in self.folders:
            if os.path.exists(f) and not os.path.isdir(f):
                raise ConfigError(f"{f}: not a folder")
        if not any(os.path.isdir(f) for f in self.folders):
            raise ConfigError(f"no such folder: {', '.join(self.folders)}")
        self.scorer_name = scorer or s.scorer
        from ..jobs import JobSettings

        # Aspects, batch size and the metadata policy, resolved once (a bad ratio fails here).
        self.job = JobSettings.resolve(s, aspects=aspects, embed=embed)
        self.poll = s.poll if poll is None else poll
        self.weights = weights if weights is not None else (s.weights or None)
        self.device = device or s.device
        self.db_url = db_url or s.resolved_db_url()
        self.window = max(0.0, float(s.stable_seconds))
        self.rescan_seconds = max(1.0, float(s.rescan_seconds))
        self.decoders = decoders or max(1, min(4, (os.cpu_count() or 2)))
        from ..workers import resolve_workers

        self.enqueue = enqueue
        self.workers = 1 if enqueue else resolve_workers(workers, s)
        if enqueue:
            from ..store.engine import resolve_url
            from ..taskqueue import conninfo

            conninfo(resolve_url(self.db_url))  # the queue lives in PostgreSQL: SQLite is a one-line error
        # A newly activated model version is noticed by its pin files and the store's flag.
        self.model_check_seconds = 2.0
        self.idle_workers_seconds = 120.0  # an idle daemon stops its worker processes
        self._model_mark: Any = None
        self._next_model_check = 0.0
        self._model_check_now = False
        self._switch_to: Any = None  # a loaded scorer waiting for the pipeline to drain
        self.poll_interval = poll_interval
        self.status_file = status_file or status_path()
        self.hints = Hints()
        self.tracker = StabilityTracker(self.window)
        self.known: dict[str, Signature] = {}  # path -> signature when it was last settled
        self._known_lock = threading.Lock()
        self._gone: dict[str, float] = {}
        self._offline: set[str] = set()
        self._mounts = {f: os.path.ismount(f) for f in self.folders}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = DaemonLock(self.status_file.parent)
        self.watcher: Watcher | None = None
        self.pipeline: Pipeline | None = None
        self.backend: Any = None
        self.started_at = time.time()
        self._process_started_at = _own_start_time()
        self.state = "starting"
        self._next_status = 0.0
        self._next_root_check = 0.0
        self._next_rescan = 0.0
        self._accept = lambda _p: True  # replaced by the foundation's photo-name rule in _open

    # -- lifecycle ---------------------------------------------------------------------------
    def _open(self) -> None:
        """Take the lock, open the store, load the scorer, start the pipeline threads."""
        from .backend import StoreBackend, make_pipeline_functions

        self._lock.acquire()
        try:
            self.backend = StoreBackend.open(
                self.db_url,
                settings=self.settings,
                scorer=None if self.enqueue else self.scorer_name,
                weights=self.weights,
                device=self.device,
                job=self.job,
            )
            if self.enqueue:
                self.pipeline = self._enqueue_sink()
            else:
                self._model_mark = self._model_fingerprint()
                load, score, chash, accept = make_pipeline_functions(self.backend)
                self._accept = accept
                self.pipeline = Pipeline(
                    self.backend,
                    load=load,
                    score=score,
                    content_hash=chash,
                    batch_size=self.job.batch_size,
                    decoders=self.decoders,
                    rehint=self.hints.changed,
                    on_done=self._settled,
                    # A file that does not decode yet gets this long to finish arriving.
                    young_seconds=max(2.0, 4 * self.window),
                    pooled=self._pooled(),
                    on_model_changed=self._model_changed,
                )
            self.backend.on_error = self.pipeline.note_error
            self.pipeline.start()
        except BaseException:
            self._lock.release()
            raise

    def _pooled(self) -> Any:
        """The worker processes for ``workers`` > 1 (None: score in this process)."""
        if self.workers <= 1:
            return None
        from .backend import PooledScoring

        return PooledScoring(self.backend, self.workers, settings=self.settings, weights=self.weights,
                             batch_size=self.job.batch_size)

    def _enqueue_sink(self) -> Any:
        from ..taskqueue import Enqueuer
        from .backend import accepts_photo_name
        from .enqueue import EnqueueSink

        self._accept = accepts_photo_name
        policy = self.job.policy
        enq = Enqueuer(self.db_url, aspects=[a.name for a in self.job.aspects], xmp=policy.mode, naming=policy.naming)
        return EnqueueSink(self.backend, enq, on_done=self._settled)

    def start(self) -> None:
        """Open everything, start watching, then scan what is already there."""
        self._open()
        assert self.pipeline is not None
        self.watcher = Watcher(
            lambda root: HintHandler(self.hints, root, self._accept),
            poll=self.poll,
            poll_interval=self.poll_interval,
        )
        try:
            self._start_offline()
            # Watch first, then scan: a file arriving during the scan is seen by one or the other.
            for folder in self.folders:
                if folder in self._offline:
                    continue
                mode = self.watcher.watch(folder)
                log.info("watching %s (%s)", folder, mode)
            self.state = "running"
            self._scan(self.folders)
        except BaseException:
            self._shutdown()
            raise
        self._next_rescan = time.monotonic() + self.rescan_seconds
        self._thread = threading.Thread(target=self._loop, name="clipcrop-dispatch", daemon=True)
        self._thread.start()

    def run_once(self, timeout: float | None = None) -> dict[str, Any]:
        """Score everything in the folders that is not scored yet, then stop; returns the counts."""
        self._open()
        assert self.pipeline is not None
        self.state = "running"
        try:
            self._start_offline()
            self._scan(self.folders)
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                self._pump()
                self._write_status()
                # Idle first, then look for hints: a decoder may re-hint a path just before it settles.
                if self.pipeline.wait_idle(0.05) and not (len(self.tracker) or len(self.hints) or self.pipeline.db.pending()):
                    break
                if self._stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                    break
                time.sleep(0.02)
        finally:
            self._shutdown()
        return self.snapshot()

    def request_stop(self) -> None:
        """Ask the service to stop (safe from a signal handler)."""
        self._stop.set()
        self.hints.wakeup.set()

    def wait(self) -> None:
        """Block until a stop is requested, then stop."""
        while not self._stop.wait(0.5):
            pass
        self.stop()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching, finish the current batch, flush the database, release the lock."""
        self._stop.set()
        self.hints.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._shutdown(timeout)

    def _shutdown(self, timeout: float = 5.0) -> None:
        self.state = "stopping"
        if self.watcher is not None:
            self.watcher.stop()
        if self.pipeline is not None:
            self.pipeline.stop(timeout)
        self.state = "stopped"
        try:
            self._write_status(force=True)
        except OSError as exc:
            log.warning("cannot write status file: %s", exc)
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        self._lock.release()

    def wait_idle(self, timeout: float = 30.0, settle: float = 0.0) -> bool:
        """(Tests, benchmarks) wait until no hint, tracked path or pipeline item is pending."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            p = self.pipeline
            # Pipeline first: a decoder re-hints a path before it lets go of it.
            busy = (p and (p.depth() or p.db.pending())) or len(self.hints) or len(self.tracker) or self._gone
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return True
            time.sleep(0.02)
        return False

    # -- the dispatcher ----------------------------------------------------------------------
    def _loop(self) -> None:
        tick = max(0.01, min(0.1, self.window / 4 if self.window else 0.05))
        while not self._stop.is_set():
            try:
                self._pump()
                now = time.monotonic()
                if now >= self._next_root_check:
                    self._check_roots()
                    self._next_root_check = now + 1.0
                if now >= self._next_model_check or self._model_check_now:
                    self._check_model()
                    self._next_model_check = now + self.model_check_seconds
                if now >= self._next_rescan:
                    log.info("reconcile: rescanning %d folder(s)", len(self.folders))
                    self._check_model()  # a new version is applied at the latest here
                    self._scan([f for f in self.folders if f not in self._offline])
                    self._next_rescan = now + self.rescan_seconds
                if self.pipeline is not None and self.pipeline.release_idle_workers(self.idle_workers_seconds):
                    log.info("idle: worker processes stopped (they start again with the next photo)")
                self._write_status()
            except Exception as exc:  # noqa: BLE001 - the dispatcher must outlive any one error
                # One line for journald; the traceback only at -vv.
                log.error("dispatcher error: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
                if self.pipeline is not None:
                    self.pipeline.note_error(f"dispatcher: {exc}")
            self.hints.wakeup.wait(tick)

    def _pump(self) -> None:
        assert self.pipeline is not None
        changed, vanished, dirs = self.hints.take()
        for path, seen in changed.items():
            self._gone.pop(path, None)
            self.tracker.note(path, seen)
        for path, seen in vanished.items():
            self.tracker.discard(path)
            self._gone[path] = seen
        for d in dirs:
            self._directory_changed(d)
        self._settle_gone()
        if self._switch_to is not None and not self._switch_model():
            return  # no new work until the photos in flight are recorded with the old version
        room = self.pipeline.free_slots()
        if room <= 0:
            return
        for path, sig in self.tracker.due(limit=room, skip=self.pipeline.in_flight()):
            if not self.pipeline.submit(path, sig):
                self.tracker.note(path, settled=True)

    def _directory_changed(self, d: str) -> None:
        if any(d == f for f in self.folders):
            return  # a watched root: the root check decides online/offline
        if os.path.isdir(d):
            self._scan_tree(d, root=self._root_of(d))
        else:
            now = time.monotonic()
            with self._known_lock:
                lost = [p for p in self.known if _under(p, d)]
            for p in lost:
                self.tracker.discard(p)
                self._gone.setdefault(p, now)

    def _settle_gone(self) -> None:
        # Wait one window before believing a disappearance: a temp-then-rename writer removes
        # and recreates names, and a moved photo's new name should be relinked first.
        if not self._gone or self.backend is None or self.pipeline is None:
            return
        now = time.monotonic()
        in_flight = self.pipeline.in_flight()
        for path, seen in list(self._gone.items()):
            if now - seen < self.window or path in in_flight:
                continue
            del self._gone[path]
            if os.path.lexists(path) or path in self.tracker:
                continue
            if any(_under(path, f) for f in self._offline):
                continue
            with self._known_lock:
                self.known.pop(path, None)
            self.pipeline.db.submit(self.backend.mark_gone, path)

    def _root_of(self, path: str) -> str:
        return max((f for f in self.folders if _under(path, f)), key=len, default=path)

    def _available(self, folder: str) -> bool:
        if not os.path.isdir(folder):
            return False
        # An unmounted share leaves its empty mount point behind.
        return not (self._mounts.get(folder) and not os.path.ismount(folder))

    def _check_roots(self) -> None:
        assert self.pipeline is not None and self.watcher is not None
        for folder in self.folders:
            ok = self._available(folder)
            if not ok and folder not in self._offline:
                log.warning("%s is unavailable; its photos are marked offline (nothing is deleted)", folder)
                self._offline.add(folder)
                self.watcher.unwatch(folder)
                for p in [p for p in list(self._gone) if _under(p, folder)]:
                    del self._gone[p]
                self.pipeline.db.submit(self.backend.mark_offline, folder)
            elif ok and folder in self._offline:
                log.warning("%s is back; rescanning it", folder)
                self._offline.discard(folder)
                self.pipeline.db.submit(self.backend.mark_online, folder)
                try:
                    self.watcher.watch(folder)
                except OSError as exc:
                    log.warning("cannot watch %s again (%s); the periodic rescan covers it", folder, exc)
                self._scan([folder])

    # -- a newly activated model version ------------------------------------------------------
    def _model_fingerprint(self) -> Any:
        """What says which model version is active, cheaply: the pin files' stats (``models
        use``, ``personalize --activate``) and the store's active-version flag."""
        from ..model.checkpoints import ACTIVE_FILE, checkpoint_dir
        from ..scoring.learned import personal_dir

        model_dir = self.settings.resolved_model_dir()
        pins = [checkpoint_dir(model_dir) / ACTIVE_FILE]
        folder = personal_dir(model_dir)
        if folder.is_dir():
            pins += sorted(folder.glob("ACTIVE-*"))
        stats = []
        for pin in pins:
            try:
                st = pin.stat()
                stats.append((str(pin), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                continue
        flag = None
        if self.backend is not None:
            try:
                mv = self.backend.store.active_model_version()
                flag = (mv.id, mv.sha256) if mv is not None else None
            except Exception as exc:  # noqa: BLE001 - a busy database must not stop the daemon
                log.debug("cannot read the active model version: %s", exc)
        return tuple(stats), flag

    def _model_changed(self) -> None:
        # Called by the collector: the worker processes loaded a newer version than ours.
        self._model_check_now = True
        self.hints.wakeup.set()

    def _check_model(self) -> None:
        """Load the active model version again when its pin or flag moved; if the scorer's
        identity changed, switch once the photos in flight are recorded (see _switch_model)."""
        if self.enqueue or self.backend is None or self._switch_to is not None:
            return
        force, self._model_check_now = self._model_check_now, False
        mark = self._model_fingerprint()
        if mark == self._model_mark and not force:
            return
        self._model_mark = mark
        from ..scoring.registry import load_scorer

        try:
            new = load_scorer(self.scorer_name, settings=self.settings, device=self.device, weights=self.weights)
        except Exception as exc:  # noqa: BLE001 - keep scoring with the version we have
            log.error("the active model changed but cannot be loaded (%s); still scoring with %s", exc,
                      self._identity(self.backend.scorer))
            if self.pipeline is not None:
                self.pipeline.note_error(f"model: {exc}")
            return
        if self._identity(new) == self._identity(self.backend.scorer):
            return
        log.info("model version changed: %s -> %s; re-scoring the watched photos with it",
                 self._identity(self.backend.scorer), self._identity(new))
        self._switch_to = new

    @staticmethod
    def _identity(scorer: Any) -> str:
        name = getattr(scorer, "name", type(scorer).__name__)
        wh = getattr(scorer, "weights_hash", None)
        return f"{name} ({wh[:12]})" if wh else f"{name} (built-in)"

    def _switch_model(self) -> bool:
        """Switch to the pending scorer once nothing is in flight; True when switched. Then every
        photo in the folders is looked at again: one whose active run is of another version is
        scored (or, switching back, gets its earlier run re-activated), like ``scan --rescore``;
        the other versions' runs stay in the database."""
        p = self.pipeline
        assert p is not None and self.backend is not None
        if p.depth() or p.db.pending():
            return False
        from .backend import make_pipeline_functions

        new, self._switch_to = self._switch_to, None
        if p.pooled is not None:
            p.pooled.close()
        self.backend.use_scorer(new)
        load, score, _chash, _accept = make_pipeline_functions(self.backend)
        p.use_scoring(load, score, self._pooled())
        with self._known_lock:
            self.known.clear()
        self._scan([f for f in self.folders if f not in self._offline])
        return True

    # -- scanning ----------------------------------------------------------------------------
    def _start_offline(self) -> None:
        # A share that is not mounted when the daemon starts must not stop it watching the
        # others: it starts offline and is picked up when it appears.
        assert self.pipeline is not None
        for folder in self.folders:
            if not os.path.isdir(folder):
                log.warning("%s does not exist (not mounted?); watching it once it appears", folder)
                self._offline.add(folder)
                self.pipeline.db.submit(self.backend.mark_offline, folder)

    def _scan(self, folders: Iterable[str]) -> None:
        for folder in folders:
            if folder not in self._offline:
                self._scan_tree(folder, root=folder, reconcile=True)

    def _scan_tree(self, top: str, *, root: str, reconcile: bool = False) -> None:
        """Track every photo under ``top`` that is new or changed since it was last settled."""
        from .backend import iter_photos

        seen: set[str] = set()
        wall = time.time()
        for path in iter_photos(top):
            if self._stop.is_set():
                return  # a SIGTERM during the first scan of a big library must not wait for it
            if is_ignored(path, root) or not self._accept(path):
                continue
            seen.add(path)
            sig = file_signature(path)
            if sig is None:
                continue
            with self._known_lock:
                if self.known.get(path) == sig:
                    continue
            if path in self.tracker:
                continue
            # Old files skip the wait; young ones may still be arriving.
            self.tracker.note(path, settled=wall - sig[1] >= self.window)
        if reconcile and self.pipeline is not None and not self._stop.is_set():
            # Deletions whose events were lost (inotify overflow) or happened while the daemon
            # was down: the database knows what was there.
            with self._known_lock:
                for p in [p for p in self.known if _under(p, top) and p not in seen]:
                    del self.known[p]
            self.pipeline.db.submit(self.backend.mark_missing_gone, top, seen)

    def _settled(self, path: str, sig: Signature) -> None:
        with self._known_lock:
            self.known[path] = sig

    # -- status ------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The status document (also what ``run_once`` returns)."""
        p = self.pipeline
        c = p.counters if p else None
        return {
            "pid": os.getpid(),
            "process_started_at": self._process_started_at,
            "state": self.state,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "folders": [
                {
                    "path": f,
                    "observer": "offline" if f in self._offline else (self.watcher.modes.get(f, "none") if self.watcher else "none"),
                    "online": f not in self._offline,
                }
                for f in self.folders
            ],
            "scorer": self.scorer_name,
            "mode": "enqueue" if self.enqueue else "score",
            "weights_hash": getattr(self.backend, "weights_hash", None) if self.backend is not None else None,
            "workers": self.workers,
            "db": _redact(self.db_url),
            "queue_depth": len(self.tracker) + (p.depth() if p else 0),
            "done": c.done if c else 0,
            "failed": c.failed if c else 0,
            "skipped": c.skipped if c else 0,
            "throughput": round(c.throughput(), 3) if c else 0.0,
            "last_error": c.last_error if c else None,
            "last_error_at": c.last_error_at if c else None,
        }

    def _write_status(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_status:
            return
        self._next_status = now + 1.0
        write_status(self.snapshot(), self.status_file)


def _own_start_time() -> float | None:
    from .status import process_start_time

    return process_start_time(os.getpid())


def _redact(url: str) -> str:
    # Never put a database password into a world-readable status file.
    from sqlalchemy.engine import make_url

    if "://" not in url:
        return url  # a bare SQLite path
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url.split("://", 1)[0] + "://..."


__all__ = ["WatchService"]
