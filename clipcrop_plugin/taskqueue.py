"""Scoring on many machines: a Procrastinate task queue in the library's PostgreSQL database.

``clipcrop scan --enqueue`` puts one job per photo on the queue (queue ``clipcrop``, task
``clipcrop.score_photo``, the photo's path as the queueing lock, so enqueuing a folder twice
does not queue a photo twice); ``clipcrop worker`` runs anywhere the photos are reachable.

Exactly once, the same way ``clipcrop scan`` is:

* A job is only a pointer; what is done lives in the library (the store). A worker settles each
  photo with :mod:`clipcrop_plugin.settle` (unchanged / known content -> nothing to score) and
  records a batch through :func:`clipcrop_plugin.jobs.record_scored` in ONE transaction, so a
  job run twice (its worker was SIGKILLed after the commit, before Procrastinate marked it done)
  finds the photo scored by this scorer and weights and does nothing.
* A killed worker's jobs stay ``doing``; every worker looks for jobs of workers whose heartbeat
  is older than ``stalled_after`` seconds (at start and every few seconds) and puts them back.
* SIGTERM: the worker stops fetching, finishes the batch being scored (or, past the grace time,
  releases it back to ``todo``) and exits within 15 s.

A photo that cannot be scored (unreadable, deleted meanwhile, outside the worker's
``path_map``) fails its job with a one-line reason, which is logged, kept in the table
``clipcrop_job_failures`` next to Procrastinate's and shown by ``clipcrop status``; the worker
keeps going.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import socket
import threading
from collections.abc import Collection, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .batching import gather
from .errors import ClipcropError, ConfigError, StoreError
from .photofiles import iter_photo_paths

if TYPE_CHECKING:
    import pluggy
    import procrastinate

    from .config import Settings
    from .scoring.base import Scorer
    from .store import Store

__all__ = ["QUEUE", "TASK", "Enqueuer", "PathMap", "QueueWorker", "conninfo", "enqueue_paths", "queue_status", "run_worker"]

log = logging.getLogger("clipcrop.worker")

QUEUE = "clipcrop"
TASK = "clipcrop.score_photo"
GRACE_SECONDS = 12.0  # SIGTERM: finish the batch this long, then release it (the bound is 15 s)

FAILURES_DDL = """
CREATE TABLE IF NOT EXISTS clipcrop_job_failures (
    job_id bigint PRIMARY KEY,
    path text NOT NULL,
    reason text NOT NULL,
    worker text NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
)
"""


class PhotoJobError(ClipcropError):
    """A job whose photo cannot be scored here; the job fails with this one-line reason (no retry)."""


class Released(ClipcropError):
    """The worker stopped before scoring this job's photo; the job goes back on the queue."""


def conninfo(db_url: str) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (``postgresql+psycopg://...``); a
    :class:`ConfigError` for any other database, because the queue lives in PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"bad database URL {db_url!r}: {exc}") from exc
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            "the task queue needs the library in PostgreSQL (--db postgresql+psycopg://USER@HOST/DB), "
            f"not {url.get_backend_name()}"
        )
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _hidden(db_url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(db_url).render_as_string(hide_password=True)


def _unreachable(db_url: str, exc: BaseException) -> StoreError:
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    text = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StoreError(f"cannot reach the queue database {_hidden(db_url)}: {text}")


# -- path mapping ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathMap:
    """Prefix rewrites from the library's paths (as enqueued) to this machine's mounts.

    ``{"/volume1/photo": "/mnt/nas/photo"}``: the job for ``/volume1/photo/2024/a.jpg`` is read
    from ``/mnt/nas/photo/2024/a.jpg``; the library keeps the enqueued path. The longest
    matching prefix wins; a path no prefix matches is read as it is.
    """

    prefixes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, mapping: dict[str, str] | Iterable[str] | None) -> PathMap:
        """From the ``path_map`` setting (a table) or ``--path-map FROM=TO`` items."""
        pairs: list[tuple[str, str]] = []
        items = mapping.items() if isinstance(mapping, dict) else (
            tuple(m.split("=", 1)) if "=" in m else (m, "") for m in (mapping or ()))
        for src, dst in items:
            if not src or not dst:
                raise ConfigError(f"path_map entry {src!r}: give it as FROM=TO (library path = local mount)")
            pairs.append((os.path.normpath(src), os.path.normpath(os.path.expanduser(dst))))
        pairs.sort(key=lambda p: -len(p[0]))
        return cls(tuple(pairs))

    def local(self, path: str) -> str:
        """Where this machine reads the photo the library knows as ``path``."""
        for src, dst in self.prefixes:
            if path == src or path.startswith(src.rstrip("/") + "/"):
                return dst + path[len(src):]
        return path

    def root_of(self, path: str) -> str | None:
        """The local mount ``path`` maps into, or None when no prefix matches."""
        for src, dst in self.prefixes:
            if path == src or path.startswith(src.rstrip("/") + "/"):
                return dst
        return None

    @property
    def identity(self) -> bool:
        return not self.prefixes


# -- the Procrastinate app -----------------------------------------------------------------------


def make_app(db_url: str) -> procrastinate.App:
    """A Procrastinate app on the library database with clipcrop's task registered (the task's
    body is the running :class:`QueueWorker`'s; enqueuers never run it)."""
    from .extras import require_extra

    require_extra("queue", "the task queue")
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=conninfo(db_url)))

    # Failures that are about the photo are final; a release (SIGTERM) or a lost database
    # connection goes back on the queue.
    retry = procrastinate.RetryStrategy(max_attempts=20, wait=2, retry_exceptions={Released, StoreError})

    @app.task(name=TASK, queue=QUEUE, pass_context=True, retry=retry)
    async def score_photo(context: Any, path: str, aspects: list[str] | None = None, xmp: str = "none",
                          naming: str = "ext") -> str:
        worker: QueueWorker = context.additional_context["clipcrop"]
        return await worker.handle(context.job.id, path, tuple(aspects or ()), xmp, naming)

    return app


def _sync_connection(db_url: str) -> Any:
    from .extras import require_extra

    require_extra("queue", "the task queue")
    import psycopg

    try:
        return psycopg.connect(conninfo(db_url), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise _unreachable(db_url, exc) from exc


def ensure_schema(db_url: str) -> None:
    """Create Procrastinate's tables (and clipcrop's failure table) once; idempotent."""
    with _sync_connection(db_url) as conn:
        # Two workers starting at once must not both apply the schema.
        conn.execute("SELECT pg_advisory_lock(hashtext('clipcrop.queue.schema'))")
        try:
            exists = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[0]
            if not exists:
                from procrastinate.schema import SchemaManager

                conn.execute(SchemaManager.get_schema())
            conn.execute(FAILURES_DDL)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext('clipcrop.queue.schema'))")


# -- enqueue -------------------------------------------------------------------------------------


class Enqueuer:
    """One connection that puts photos on the queue, chunk by chunk (``scan --enqueue``, and
    ``watch --enqueue`` for each batch of settled photos). A photo that already waits on the
    queue (status ``todo``) is not queued again: its path is the job's queueing lock.
    ``xmp``: ``none`` | ``sidecar`` | ``embed``, what the worker publishes; ``aspects``: set
    names (``"4:5"``)."""

    def __init__(self, db_url: str, *, aspects: Sequence[str] = (), xmp: str = "none", naming: str = "ext") -> None:
        self.db_url, self.aspects, self.xmp, self.naming = db_url, list(aspects), xmp, naming
        self._conn: Any = None

    def put(self, paths: Sequence[str]) -> tuple[int, int]:
        """Queue ``paths`` in one transaction; returns ``(queued, already_waiting)``. An
        unreachable database raises :class:`StoreError` (one line); the next call reconnects."""
        if not paths:
            return 0, 0
        import psycopg
        from psycopg.types.json import Jsonb

        if self._conn is None:
            ensure_schema(self.db_url)
            self._conn = _sync_connection(self.db_url)
        rows = [(QUEUE, TASK, p, Jsonb({"path": p, "aspects": self.aspects, "xmp": self.xmp, "naming": self.naming}))
                for p in paths]
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                # ON CONFLICT on Procrastinate's partial unique index of queueing locks (status
                # 'todo'): the photo is already waiting. One statement per chunk: ~10k jobs/s.
                cur.executemany(
                    "INSERT INTO procrastinate_jobs (queue_name, task_name, queueing_lock, args) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING id", rows, returning=True)
                n = 0
                while True:
                    if cur.fetchone() is not None:
                        n += 1
                    if not cur.nextset():
                        break
        except psycopg.Error as exc:
            self.close()
            raise _unreachable(self.db_url, exc) from exc
        return n, len(paths) - n

    def close(self) -> None:
        """Close the connection (a later :meth:`put` opens a new one)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def enqueue_paths(db_url: str, paths: Iterable[str | os.PathLike[str]], *, aspects: Sequence[str] = (),
                  xmp: str = "none", naming: str = "ext", chunk: int = 1000) -> tuple[int, int]:
    """Put every photo under ``paths`` on the queue; returns ``(queued, already_queued)`` (see
    :class:`Enqueuer`)."""
    queued = dup = 0
    enq = Enqueuer(db_url, aspects=aspects, xmp=xmp, naming=naming)
    try:
        batch: list[str] = []
        for p in iter_photo_paths(paths):
            batch.append(str(p))
            if len(batch) >= chunk:
                q, d = enq.put(batch)
                queued, dup, batch = queued + q, dup + d, []
        q, d = enq.put(batch)
        return queued + q, dup + d
    finally:
        enq.close()


# -- status --------------------------------------------------------------------------------------


def queue_status(db_url: str, *, recent: int = 5, alive_after: float = 30.0) -> dict[str, Any]:
    """Queue depth, workers seen and failures, for ``clipcrop status``.

    Keys: ``todo``, ``doing``, ``succeeded``, ``failed``, ``workers`` (alive: heartbeat within
    ``alive_after`` s), ``workers_stale``, ``last_failures`` ([{path, reason, worker, at}]).
    An unreachable database raises :class:`StoreError` (one line).
    """
    with _sync_connection(db_url) as conn:
        if not conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()[0]:
            return {"queue": QUEUE, "todo": 0, "doing": 0, "succeeded": 0, "failed": 0, "workers": 0,
                    "workers_stale": 0, "last_failures": [], "installed": False}
        counts = dict(conn.execute(
            "SELECT status::text, count(*) FROM procrastinate_jobs WHERE queue_name = %s GROUP BY status",
            (QUEUE,)).fetchall())
        alive, stale = conn.execute(
            "SELECT count(*) FILTER (WHERE last_heartbeat >= now() - make_interval(secs => %s)),"
            " count(*) FILTER (WHERE last_heartbeat < now() - make_interval(secs => %s)) FROM procrastinate_workers",
            (alive_after, alive_after)).fetchone()
        fails: list[dict[str, Any]] = []
        if conn.execute("SELECT to_regclass('clipcrop_job_failures') IS NOT NULL").fetchone()[0]:
            fails = [{"job": j, "path": p, "reason": r, "worker": w, "at": at.timestamp()} for j, p, r, w, at in
                     conn.execute("SELECT job_id, path, reason, worker, failed_at FROM clipcrop_job_failures"
                                  " ORDER BY failed_at DESC LIMIT %s", (recent,)).fetchall()]
    return {"queue": QUEUE, "installed": True, "todo": counts.get("todo", 0), "doing": counts.get("doing", 0),
            "succeeded": counts.get("succeeded", 0), "failed": counts.get("failed", 0),
            "workers": int(alive or 0), "workers_stale": int(stale or 0), "last_failures": fails}


# -- the worker ----------------------------------------------------------------------------------


@dataclass
class _Job:
    job_id: int
    path: str
    local: str
    aspects: tuple[str, ...]
    xmp: str
    naming: str
    future: Future[str] = field(default_factory=Future)
    content_hash: str = ""
    mtime: float = 0.0
    size: int = 0


_STOP = object()


class QueueWorker:
    """Scores queued photos in batches: Procrastinate fetches up to ``concurrency`` jobs at once,
    each hands its photo to one batch thread (the only one that touches the store and the
    scorer), which settles, scores ``batch_size`` photos in one scorer call and records them in
    one transaction through :func:`clipcrop_plugin.jobs.record_scored`."""

    def __init__(self, db_url: str, scorer: Scorer, store: Store, *, path_map: PathMap | None = None,
                 batch_size: int = 8, plugins: pluggy.PluginManager | None = None, name: str | None = None,
                 batch_wait: float = 0.05) -> None:
        self.db_url, self.scorer, self.store = db_url, scorer, store
        self.path_map = path_map or PathMap()
        self.batch_size, self.batch_wait, self.plugins = max(1, batch_size), batch_wait, plugins
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.scorer_name = getattr(scorer, "name", type(scorer).__name__)
        self.weights_hash = getattr(scorer, "weights_hash", None)
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="clipcrop-queue-batch", daemon=True)
        self._releasing = threading.Event()
        self.done = self.failed = self.skipped = 0

    # -- called on the event loop, one per job
    async def handle(self, job_id: int, path: str, aspects: tuple[str, ...], xmp: str, naming: str) -> str:
        if self._releasing.is_set():
            raise Released(f"{path}: released by worker {self.name} (stopping)")
        job = _Job(job_id, path, self.path_map.local(path), aspects, xmp, naming)
        self._q.put(job)
        try:
            return await asyncio.wrap_future(job.future)
        except PhotoJobError as exc:
            self._record_job_failure(job_id, path, str(exc))
            raise

    def _record_job_failure(self, job_id: int, path: str, reason: str) -> None:
        log.warning("job %s failed: %s", job_id, reason)
        try:
            with _sync_connection(self.db_url) as conn:
                conn.execute("INSERT INTO clipcrop_job_failures (job_id, path, reason, worker) VALUES (%s, %s, %s, %s)"
                             " ON CONFLICT (job_id) DO UPDATE SET reason = EXCLUDED.reason, worker = EXCLUDED.worker,"
                             " failed_at = now()", (job_id, path, reason, self.name))
        except StoreError as exc:
            log.error("%s", exc)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._releasing.set()
        self._q.put(_STOP)
        self._thread.join(timeout)

    # -- the batch thread
    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is _STOP:
                self._drain_released()
                return
            batch, stop_after = gather(self._q, first, self.batch_size, self.batch_wait, _STOP)
            try:
                self._process(batch)
            except Exception as exc:  # noqa: BLE001 - a batch error must not end the worker
                err = exc if isinstance(exc, StoreError) else StoreError(f"batch failed: {type(exc).__name__}: {exc}")
                log.error("%s", err)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(err)
            if stop_after:
                self._drain_released()
                return

    def _drain_released(self) -> None:
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and not job.future.done():
                job.future.set_exception(Released(f"{job.path}: released by worker {self.name} (stopping)"))

    def _fail(self, job: _Job, reason: str) -> None:
        self.failed += 1
        job.future.set_exception(PhotoJobError(reason))

    def _owed(self, job: _Job, held: Collection[str]) -> None:
        """An unchanged photo whose metadata a killed worker still owes: write it from the store."""
        from .jobs import MetadataPolicy, publish_held

        if job.path not in held:
            return
        policy = MetadataPolicy(job.xmp, job.naming, tuple(job.aspects))
        out = publish_held(self.store, job.path, policy, plugins=self.plugins,
                           locate=None if self.path_map.identity else self.path_map.local)
        if out is not None:
            log.info("wrote the owed crop metadata of %s", job.path)

    def _settle(self, job: _Job, held: Collection[str] = ()) -> bool:
        """True when the photo needs scoring; otherwise the job is finished here (``held``: paths
        whose metadata is owed, see :func:`clipcrop_plugin.jobs.publish_held`)."""
        from .candidates import parse_aspect
        from .hashing import content_hash
        from .settle import required_sets, settle_scored_content, settle_unchanged

        # A photo whose run lacks a set this job asks for is scored again (scan's rule).
        sets = required_sets([parse_aspect(a) for a in job.aspects])
        try:
            st = os.stat(job.local)
        except FileNotFoundError:
            root = self.path_map.root_of(job.path)
            if root is not None and not os.path.isdir(root):
                self._fail(job, f"{job.path}: not reachable here: path_map sends it to {job.local},"
                                f" and {root} is not mounted on {socket.gethostname()}")
            elif not os.path.isdir(os.path.dirname(job.local)):
                # A whole folder missing is an unmounted share or a wrong mapping, not a deletion:
                # like scan's offline rule, nothing is marked gone.
                hint = "check path_map" if root is not None else "not mounted here? set path_map"
                self._fail(job, f"{job.path}: not reachable here ({os.path.dirname(job.local)} does not exist; {hint})")
            else:
                self.store.mark_gone(job.path)
                self._fail(job, f"{job.path}: deleted since it was queued")
            return False
        except OSError as exc:
            self._fail(job, f"{job.path}: cannot read {job.local} ({exc.strerror or exc})")
            return False
        ident = (self.scorer_name, self.weights_hash)
        if settle_unchanged(self.store, job.path, st.st_size, st.st_mtime, *ident, sets=sets) == "skipped":
            self.skipped += 1
            self._owed(job, held)
            job.future.set_result("unchanged")
            return False
        try:
            job.content_hash = content_hash(job.local)
        except ClipcropError as exc:
            self._fail(job, str(exc).replace(job.local, job.path))
            return False
        job.mtime, job.size = st.st_mtime, st.st_size
        if self.path_map.identity:
            outcome = settle_scored_content(self.store, job.path, job.content_hash, st.st_size, st.st_mtime, *ident,
                                            sets=sets)
        else:
            # The settle rules test whether an old path still exists, which this machine cannot
            # see for other paths: only "same path, same content" is settled here.
            ref = self.store.find_path(job.path)
            outcome = None
            if (ref is not None and ref.content_hash == job.content_hash
                    and settle_scored_content(self.store, job.path, job.content_hash, st.st_size, st.st_mtime, *ident,
                                              sets=sets) == "skipped"):
                outcome = "skipped"
        if outcome is not None:
            self.skipped += 1
            if outcome == "skipped":
                self._owed(job, held)
            job.future.set_result(outcome)
            return False
        return True

    def _process(self, batch: list[_Job]) -> None:
        import dataclasses

        from .candidates import parse_aspect
        from .jobs import MetadataPolicy, record_scored
        from .settle import aspects_to_keep
        from .suggest import suggest_paths

        todo: list[_Job] = []
        seen: set[str] = set()
        writes = [job.path for job in batch if job.xmp != "none"]
        held = self.store.held_metadata(writes) if writes else set()
        for job in batch:
            if self._settle(job, held):
                if job.content_hash in seen:
                    # A copy of a photo in this batch: settle it after the first is recorded
                    # (then it gets a copy of the scores instead of a second scoring).
                    self._q.put(job)
                    continue
                seen.add(job.content_hash)
                todo.append(job)
        # Group by what was asked (aspects, metadata), with the sets an earlier run of the photo
        # already has (scored again for a new set, it keeps them): normally one group.
        groups: dict[tuple[tuple[str, ...], str, str, tuple[str, ...]], list[_Job]] = {}
        for job in todo:
            asked = [parse_aspect(a) for a in job.aspects]
            kept = aspects_to_keep(self.store, job.content_hash, self.scorer_name, self.weights_hash, asked)
            key = (tuple(a.name for a in kept), job.xmp, job.naming, tuple(a.name for a in asked))
            groups.setdefault(key, []).append(job)
        for (aspects, xmp, naming, asked_names), jobs in groups.items():
            ratios = [parse_aspect(a) for a in aspects]
            policy = MetadataPolicy(xmp, naming, asked_names)
            local_to_job = {j.local: j for j in jobs}
            suggestions = {s.path: s for s in suggest_paths([j.local for j in jobs], self.scorer, ratios,
                                                              batch_size=self.batch_size, recursive=False)}
            items = []
            for j in jobs:
                s = suggestions.get(j.local)
                if s is None:
                    self._fail(j, f"{j.path}: not scored")
                    continue
                if j.local != j.path:
                    info = dataclasses.replace(s.info, path=j.path) if s.info is not None else None
                    err = s.error.replace(j.local, j.path) if s.error else s.error
                    s = s.replace(path=j.path, info=info, error=err)
                items.append((s, j.content_hash, j.mtime, j.size))
            if not items:
                continue
            outcomes = record_scored(self.store, items, policy, plugins=self.plugins,
                                     locate=None if self.path_map.identity else self.path_map.local)
            scored = 0
            for (s, _h, _m, _z), out in zip(items, outcomes):
                job = local_to_job[self.path_map.local(s.path)]
                if not s.ok:
                    self._fail(job, s.error or f"{s.path}: could not be scored")
                    continue
                self.done += 1
                scored += 1
                log.debug("scored %s", s.path)
                if out.error:
                    log.warning("xmp not written: %s", out.error)
                job.future.set_result("scored")
            log.info("scored %d photo(s)", scored)


class _OwnLines(logging.Filter):
    """Drop Procrastinate's traceback for a job we failed on purpose: the worker logged its one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, (PhotoJobError, Released))


async def _recover_stalled(app: procrastinate.App, stalled_after: float) -> int:
    """Put the jobs of workers that stopped sending heartbeats back on the queue."""
    jobs = await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=stalled_after)
    n = 0
    for job in jobs:
        await app.job_manager.retry_job(job)
        log.warning("job %s (%s) was left running by a lost worker; queued again", job.id,
                    job.task_kwargs.get("path", "?"))
        n += 1
    return n


def run_worker(db_url: str, scorer: Scorer, store: Store, *, concurrency: int = 8, once: bool = False,
               path_map: PathMap | None = None, plugins: pluggy.PluginManager | None = None,
               heartbeat: float = 5.0, stalled_after: float = 30.0, settings: Settings | None = None) -> QueueWorker:
    """Run a queue worker until SIGTERM/SIGINT (or, with ``once``, until the queue is empty).

    ``concurrency``: jobs fetched at once, which is also the scoring batch size. Jobs of workers
    silent for ``stalled_after`` seconds are queued again (at start and while running).
    Raises :class:`StoreError` (one line) when the database cannot be reached at start.
    """
    import procrastinate  # noqa: F401 - a missing extra is reported by make_app

    ensure_schema(db_url)
    app = make_app(db_url)
    worker = QueueWorker(db_url, scorer, store, path_map=path_map, batch_size=concurrency, plugins=plugins)
    worker.start()
    own = _OwnLines()
    for name in ("procrastinate", "procrastinate.worker", f"procrastinate.worker.{worker.name}"):
        logging.getLogger(name).addFilter(own)
    log.info("worker %s: scorer %s, queue %s in %s, concurrency %d", worker.name, worker.scorer_name, QUEUE,
             _hidden(db_url), concurrency)

    async def main() -> None:
        async with app.open_async():
            n = await _recover_stalled(app, stalled_after)
            if n:
                log.info("queued %d job(s) of lost workers again", n)

            async def watch_stalled() -> None:
                while True:
                    await asyncio.sleep(max(1.0, heartbeat))
                    try:
                        await _recover_stalled(app, stalled_after)
                    except Exception as exc:  # noqa: BLE001 - the next round tries again
                        log.warning("%s", _unreachable(db_url, exc))

            monitor = asyncio.create_task(watch_stalled())
            try:
                await app.run_worker_async(
                    queues=[QUEUE], concurrency=concurrency, wait=not once, name=worker.name,
                    shutdown_graceful_timeout=GRACE_SECONDS, additional_context={"clipcrop": worker},
                    update_heartbeat_interval=heartbeat, stalled_worker_timeout=stalled_after,
                    fetch_job_polling_interval=1.0,
                )
            finally:
                monitor.cancel()

    try:
        asyncio.run(main())
    except Exception as exc:
        if type(exc).__module__.startswith(("procrastinate", "psycopg")):
            raise _unreachable(db_url, exc) from exc
        raise
    finally:
        worker.stop()
    return worker
