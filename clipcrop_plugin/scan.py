"""One pass over photo folders into the crop database (``clipcrop scan``).

A photo is recognised by its content hash: already scored by this scorer+weights -> skipped
(a moved or renamed file is relinked, a duplicate gets a copy of the scores); changed content ->
scored again (the rules are :mod:`clipcrop_plugin.settle`'s, shared with the daemon; storing
and publishing is :func:`clipcrop_plugin.jobs.record_scored`'s). Failures are stored per photo with their reason and never stop the pass. Scores
are written one batch per transaction, so an interruption (Ctrl-C) loses at most the batch in
flight and the next scan carries on from there.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .candidates import AspectRatio
from .config import Settings
from .errors import ClipcropError
from .hashing import content_hash
from .jobs import MetadataPolicy, publish_held, record_failure, record_scored
from .photofiles import iter_photo_paths
from .results import Suggestion
from .scoring.base import Scorer
from .settle import group_by_kept_aspects, required_sets, settle_gone, settle_scored_content, settle_unchanged
from .store import Store
from .suggest import failed, suggest_paths
from .workers import WorkerPool

if TYPE_CHECKING:
    import pluggy

__all__ = ["ScanReport", "scan_folders", "scan_paths", "settle_scored_content", "settle_unchanged"]

log = logging.getLogger("clipcrop.scan")

# progress(done, total, path): called after each photo is settled; may raise KeyboardInterrupt.
Progress = Callable[[int, int, str], None]
NO_METADATA = MetadataPolicy("none")


@dataclass
class ScanReport:
    """What a scan did. ``failures`` and ``metadata_errors`` hold ``(path, reason)``."""

    total: int = 0
    scored: int = 0
    skipped: int = 0
    relinked: int = 0
    copied: int = 0
    gone: int = 0
    offline: int = 0
    new_sets: int = 0  # of ``scored``: already scored, but a set this pass asks for was missing
    interrupted: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)
    metadata_errors: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 1
    worker_rss: list[int] = field(default_factory=list)  # bytes per worker process, at the end

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def done(self) -> int:
        return self.scored + self.skipped + self.relinked + self.copied + self.failed

    def summary(self) -> str:
        """One line of counts for the end of a scan."""
        scored = f"{self.scored} scored" + (f" ({self.new_sets} for new candidate sets)" if self.new_sets else "")
        parts = [scored, f"{self.skipped} unchanged", f"{self.relinked} relinked"]
        if self.copied:
            parts.append(f"{self.copied} duplicates")
        parts.append(f"{self.failed} failed")
        if self.gone:
            parts.append(f"{self.gone} gone")
        if self.offline:
            parts.append(f"{self.offline} offline folders")
        if self.metadata_errors:
            parts.append(f"{len(self.metadata_errors)} metadata errors")
        line = f"{self.done}/{self.total} photos: " + ", ".join(parts)
        return line + (" (interrupted; run the scan again to continue)" if self.interrupted else "")


@dataclass
class _Pending:
    path: str
    content_hash: str
    mtime: float
    size: int


class _Scanner:
    def __init__(self, store: Store, scorer: Scorer, aspects: Sequence[AspectRatio], report: ScanReport,
                 progress: Progress | None, policy: MetadataPolicy, plugins: pluggy.PluginManager | None,
                 batch_size: int, grid: bool):
        self.store, self.scorer, self.aspects, self.report = store, scorer, aspects, report
        self.progress, self.policy, self.plugins = progress, policy, plugins
        self.batch_size, self.grid = max(1, batch_size), grid
        self.scorer_name = getattr(scorer, "name", type(scorer).__name__)
        self.weights_hash = getattr(scorer, "weights_hash", None)
        self.pending: list[_Pending] = []
        # With a worker pool: batches being scored (oldest first), the content hashes they
        # claim (a second copy of one content waits for the first to be committed, then is
        # settled as a duplicate), and the paths that waited.
        self.pool: WorkerPool | None = None
        self.inflight: deque[tuple[list[tuple[Future[Any], list[str], Sequence[AspectRatio]]], list[_Pending]]] = deque()
        self.claimed: set[str] = set()
        self.waiting: list[str] = []
        # A photo whose run lacks a set this pass asks for (a new --aspect, changed config) is
        # scored again; the others are settled without decoding.
        self.sets = required_sets(aspects, grid)
        # Photos whose metadata an earlier, killed pass still owes (normally none): written from
        # their stored scores when this pass finds them unchanged.
        self.held = store.held_metadata() if policy.writes else set()

    def _tick(self, path: str) -> None:
        if self.progress is not None:
            self.progress(self.report.done, self.report.total, path)

    def _fail(self, path: str, reason: str, h: str | None = None, st: os.stat_result | None = None) -> None:
        record_failure(self.store, path, reason, h, mtime=st.st_mtime if st else None,
                       size=st.st_size if st else None, scorer=self.scorer, plugins=self.plugins)
        self.report.failures.append((path, reason))
        self._tick(path)

    def visit(self, path: str) -> None:
        """Settle one path: skip, relink, copy, fail, or queue it for scoring."""
        try:
            st = os.stat(path)
        except OSError as exc:
            reason = "file vanished before it could be read" if isinstance(exc, FileNotFoundError) else (
                f"cannot read ({exc.strerror or exc})")
            self._fail(path, f"{path}: {reason}")
            return
        ident = (self.scorer_name, self.weights_hash)
        if settle_unchanged(self.store, path, st.st_size, st.st_mtime, *ident, sets=self.sets) == "skipped":
            self.report.skipped += 1
            self._owed(path)
            self._tick(path)
            return
        try:
            h = content_hash(path)
        except ClipcropError as exc:
            self._fail(path, str(exc), st=st)
            return
        if self.pool is not None and (h in self.claimed or any(p.content_hash == h for p in self.pending)):
            self.waiting.append(path)
            return
        outcome = settle_scored_content(self.store, path, h, st.st_size, st.st_mtime, *ident, sets=self.sets)
        if outcome is not None:
            setattr(self.report, outcome, getattr(self.report, outcome) + 1)
            if outcome == "skipped":
                self._owed(path)
            self._tick(path)
            return
        if self.store.is_scored(h, *ident):
            self.report.new_sets += 1
        self.pending.append(_Pending(path, h, st.st_mtime, st.st_size))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def _owed(self, path: str) -> None:
        if path in self.held:
            self.held.discard(path)
            out = publish_held(self.store, path, self.policy, plugins=self.plugins)
            if out is not None and out.error:
                self.report.metadata_errors.append((path, out.error))

    def flush(self) -> None:
        """Score the queued photos and write them in one transaction."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        # Photos scored again for a new set keep their earlier sets: score each group of photos
        # that keeps the same sets together (new photos get exactly the asked-for sets).
        groups = list(group_by_kept_aspects(self.store, [(p.path, p.content_hash) for p in batch],
                                            self.scorer_name, self.weights_hash, self.aspects))
        if self.pool is not None:
            self.claimed.update(p.content_hash for p in batch)
            futures = [(self.pool.submit(group, aspects), group, aspects) for aspects, group in groups]
            self.inflight.append((futures, batch))
            # Two batches per worker keep every process busy while the parent writes.
            while len(self.inflight) > 2 * self.pool.workers:
                self.collect()
            return
        by_path: dict[str, Suggestion] = {}
        for aspects, group in groups:
            for s in suggest_paths(group, self.scorer, aspects, batch_size=self.batch_size, grid=self.grid,
                                   recursive=False):
                by_path[s.path] = s
        self._record(batch, by_path)

    def collect(self) -> None:
        """Record the oldest batch in flight (waits for its worker)."""
        futures, batch = self.inflight.popleft()
        assert self.pool is not None
        try:
            by_path = {s.path: s for fut, group, aspects in futures for s in self.pool.result(fut, group, aspects)}
            self._record(batch, by_path)
        finally:
            self.claimed.difference_update(p.content_hash for p in batch)

    def drain(self) -> None:
        """Record every batch in flight, then settle the paths that waited for one of them."""
        while self.inflight:
            self.collect()
        while self.waiting:
            waiting, self.waiting = self.waiting, []
            for path in waiting:
                self.visit(path)
            self.flush()
            while self.inflight:
                self.collect()

    def _record(self, batch: list[_Pending], by_path: dict[str, Suggestion]) -> None:
        # keep path <-> suggestion pairing exact, whatever the scorer returned
        suggestions = [by_path.get(p.path) or failed(p.path, "not scored", self.scorer) for p in batch]
        outcomes = record_scored(self.store, [(s, p.content_hash, p.mtime, p.size) for s, p in zip(suggestions, batch)],
                                 self.policy, plugins=self.plugins)
        for s, p, o in zip(suggestions, batch, outcomes):
            if s.ok:
                self.report.scored += 1
                if o.error:
                    self.report.metadata_errors.append((p.path, o.error))
            else:
                self.report.failures.append((p.path, s.error or "not scored"))
            self._tick(p.path)


def scan_paths(
    store: Store, paths: Iterable[str | os.PathLike[str]], scorer: Scorer, aspects: Sequence[AspectRatio] = (), *,
    progress: Progress | None = None, stop: Callable[[], bool] | None = None,
    policy: MetadataPolicy = NO_METADATA, plugins: pluggy.PluginManager | None = None, batch_size: int = 8,
    grid: bool = True, report: ScanReport | None = None, workers: int = 1, settings: Settings | None = None,
    weights: str | None = None,
) -> ScanReport:
    """Process explicit photo paths (no folder walk, no gone detection). See :func:`scan_folders`."""
    plist = [os.path.abspath(os.fspath(p)) for p in paths]
    report = report or ScanReport()
    report.total = report.total or len(plist)
    scanner = _Scanner(store, scorer, aspects, report, progress, policy, plugins, batch_size, grid)
    pool = None
    # Never more processes than batches: a scan of a handful of photos pays no process start.
    workers = min(int(workers), -(-len(plist) // max(1, batch_size)))
    if workers > 1:
        # ``settings``/``weights``: what each worker process loads its scorer with.
        pool = scanner.pool = WorkerPool(scorer, workers, aspects, settings=settings, weights=weights, grid=grid,
                                         batch_size=batch_size)
        report.workers = workers
    try:
        for path in plist:
            if stop is not None and stop():
                report.interrupted = True
                break
            scanner.visit(path)
        if not report.interrupted:
            scanner.flush()
            scanner.drain()
        else:
            scanner.inflight.clear()
    except KeyboardInterrupt:
        # Everything written so far is committed batch by batch; the batches in flight are
        # dropped whole, so the database stays consistent and the next scan redoes only those.
        report.interrupted = True
        scanner.inflight.clear()
    finally:
        if pool is not None:
            report.worker_rss = pool.memory()
            pool.close(cancel=report.interrupted)
    return report


def scan_folders(
    store: Store, folders: Sequence[str | os.PathLike[str]], scorer: Scorer, aspects: Sequence[AspectRatio] = (), *,
    progress: Progress | None = None, stop: Callable[[], bool] | None = None,
    policy: MetadataPolicy = NO_METADATA, plugins: pluggy.PluginManager | None = None, batch_size: int = 8,
    grid: bool = True, workers: int = 1, settings: Settings | None = None, weights: str | None = None,
) -> ScanReport:
    """Scan ``folders`` (and photo files given directly) into ``store``.

    ``progress(done, total, path)`` is called after each photo; ``stop()`` is polled between
    photos; each newly scored photo's metadata is published per ``policy`` (default: none) and
    the ``photo_scored``/``metadata_written`` hooks of ``plugins`` fire once per photo (see
    :func:`clipcrop_plugin.jobs.record_scored`). Ctrl-C (``KeyboardInterrupt``) or ``stop()`` ends the pass early with
    ``report.interrupted`` set and a consistent database. After a complete pass, stored photos
    under the folders whose files are gone are marked ``gone``; a folder that is missing entirely
    (an unmounted drive) has its photos marked offline instead.

    ``workers`` > 1 decodes and scores in that many processes (:class:`clipcrop_plugin.workers.WorkerPool`,
    each loading the scorer by name with ``settings``/``weights``); this process still does every
    database write, one transaction per batch, so the exactly-once rules are unchanged.
    """
    roots = [os.path.abspath(os.fspath(f)) for f in folders]
    missing = [r for r in roots if not os.path.exists(r)]
    present = [r for r in roots if os.path.exists(r)]
    report = ScanReport()
    for root in missing:
        if store.photos_under(root):
            report.offline += 1
            store.mark_offline(root)
        else:
            report.failures.append((root, f"{root}: no such file or folder"))
    paths = [str(p) for p in iter_photo_paths(present)]
    report.total = len(paths)
    scan_paths(store, paths, scorer, aspects, progress=progress, stop=stop, policy=policy, plugins=plugins,
               batch_size=batch_size, grid=grid, report=report, workers=workers, settings=settings, weights=weights)
    if report.interrupted:
        return report
    seen = set(paths)
    for root in present:
        if not os.path.isdir(root):
            continue
        store.mark_online(root)
        report.gone += settle_gone(store, root, seen)
    return report


def rescore_library(
    store: Store, scorer: Scorer, aspects: Sequence[AspectRatio] = (), *, folders: Sequence[str | os.PathLike[str]] = (),
    progress: Progress | None = None, stop: Callable[[], bool] | None = None,
    policy: MetadataPolicy = NO_METADATA, plugins: pluggy.PluginManager | None = None, batch_size: int = 8,
    grid: bool = True,
) -> ScanReport:
    """Bring every photo already in the database (or under ``folders``) to ``scorer``'s current weights.

    After a new model version is activated (``clipcrop-train personalize --activate``, ``clipcrop
    models use``) the scorer reports another weights hash: photos it has not scored yet are
    scored, photos it already scored (switching back) just get those runs re-activated. Runs of
    other versions stay in the database, queryable by scorer and weights hash. Deleted
    (``gone``) photos and files that are not reachable now (offline drives) are left alone.
    """
    from .store import QueryFilters

    roots = [os.path.abspath(os.fspath(f)) for f in folders] or [None]
    paths: dict[str, None] = {}
    for root in roots:
        for ph in store.query(QueryFilters(folder=root), sort="path", limit=None):
            if ph.status != "gone" and not ph.offline and os.path.isfile(ph.path):
                paths[ph.path] = None
    return scan_paths(store, list(paths), scorer, aspects, progress=progress, stop=stop, policy=policy,
                      plugins=plugins, batch_size=batch_size, grid=grid)
