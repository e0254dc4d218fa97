"""The daemon's bindings to the rest of clipcrop: the store, the scorer, the job layer.

Everything here runs on the pipeline's DB thread (the ``StoreBackend`` methods) or is a plain
function the pipeline's other threads call (``make_pipeline_functions``). The skip/relink/gone
rules are :mod:`clipcrop_plugin.settle`'s and storing + publishing is
:func:`clipcrop_plugin.jobs.record_scored`, the same as ``clipcrop scan``'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from ..config import Settings
from ..jobs import JobSettings, MetadataPolicy, publish, record_failure, record_scored
from ..photofiles import is_photo_name, iter_photo_paths
from ..results import Suggestion
from ..settle import group_by_kept_aspects, required_sets, settle_gone, settle_scored_content, settle_unchanged
from .stability import Signature, file_signature

log = logging.getLogger("clipcrop.daemon")


def iter_photos(top: str) -> Iterator[str]:
    """Photo files under ``top``, walked the way ``clipcrop suggest``/``scan`` walk."""
    if not os.path.isdir(top):
        return
    for p in iter_photo_paths([top]):
        yield os.fspath(p)


def accepts_photo_name(path: str) -> bool:
    """Whether an event path names a photo (the shared photo-name rule)."""
    return is_photo_name(os.path.basename(path))


def _mtime(sig: Signature | None) -> float | None:
    return None if sig is None else sig[1]


def _size(sig: Signature | None) -> int | None:
    return None if sig is None else sig[0]


class StoreBackend:
    """A :class:`~clipcrop_plugin.store.Store` plus the scorer identity and the metadata policy."""

    def __init__(
        self, store: Any, scorer: Any, aspects: list[Any], *, policy: MetadataPolicy, settings: Settings | None = None
    ) -> None:
        from ..hooks import get_plugin_manager

        self.store = store
        self.settings = settings or Settings()
        self.plugins = get_plugin_manager()
        self.aspects = aspects
        # Photos whose run lacks one of these sets (a new configured aspect) are scored again.
        self.sets = required_sets(aspects)
        self.policy = policy
        self.use_scorer(scorer)
        # Set by the service: called with an error line when metadata cannot be written.
        self.on_error: Callable[[str], None] = lambda _m: None

    def use_scorer(self, scorer: Any) -> None:
        """Score with ``scorer`` from now on (a newly activated model version); its identity
        (name, weights hash) is what "already scored" is judged by."""
        self.scorer = scorer
        self.scorer_name: str = getattr(scorer, "name", type(scorer).__name__) if scorer is not None else "queue"
        self.weights_hash: str | None = getattr(scorer, "weights_hash", None)

    @classmethod
    def open(
        cls,
        url: str,
        *,
        settings: Settings,
        scorer: str | None,
        weights: str | None,
        device: str,
        job: JobSettings | None = None,
    ) -> StoreBackend:
        """Open the database (upgrading it) and load the scorer; raises typed clipcrop errors.

        ``job``: aspects and metadata policy (default: resolved from ``settings``). ``scorer``
        None (``watch --enqueue``): no scorer is loaded; the queue's workers score."""
        from ..scoring.registry import load_scorer
        from ..store import Store

        job = job or JobSettings.resolve(settings)  # bad input fails before anything opens
        store = Store.open(url, settings=settings)
        try:
            sc = None if scorer is None else load_scorer(scorer, settings=settings, device=device, weights=weights)
        except BaseException:
            store.close()
            raise
        return cls(store, sc, list(job.aspects), policy=job.policy, settings=settings)

    def close(self) -> None:
        self.store.close()

    # -- Backend protocol (DB thread) ----------------------------------------------------------
    # The decisions are clipcrop scan's (``settle.settle_unchanged`` / ``settle.settle_scored_content``).

    def already_done(self, path: str, signature: Signature) -> bool:
        """Same path, size and mtime as when this scorer scored it (or failed on it): nothing to do."""
        outcome = settle_unchanged(self.store, path, signature[0], signature[1], self.scorer_name,
                                   self.weights_hash, retry_failed=False, sets=self.sets)
        if outcome == "skipped":
            self._ensure_metadata(path)
        return outcome is not None

    def handled_since_changed(self, path: str, signature: Signature) -> bool:
        """(``watch --enqueue``) The library has this exact file (path, size, mtime) scored or
        failed, by whichever worker: queueing it again would only make a worker skip it."""
        ref = self.store.find_path(path)
        return bool(ref is not None and ref.size == signature[0] and ref.mtime == signature[1]
                    and ref.status in ("scored", "failed"))

    def is_scored(self, content_hash: str) -> bool:
        return bool(self.store.is_scored(content_hash, self.scorer_name, self.weights_hash, sets=self.sets))

    def relink(self, content_hash: str, path: str, signature: Signature) -> None:
        """Already-scored content at ``path``: unchanged (seen), moved (relink) or a copy (copy scores)."""
        moved_from = [r.path for r in self.store.find_by_hash(content_hash) if r.path != path and not os.path.exists(r.path)]
        outcome = settle_scored_content(self.store, path, content_hash, _size(signature), _mtime(signature),
                                        self.scorer_name, self.weights_hash, sets=self.sets)
        if outcome is None:
            return
        if outcome != "skipped":
            log.info("%s %s (same content as a scored photo; scores kept)", outcome, path)
        if outcome == "relinked" and moved_from:
            self._sidecars(path, "follow_photo_move", moved_from[0], path)
        self._ensure_metadata(path)

    def _sidecars(self, path: str, action: str, *args: str) -> None:
        """Move or remove clipcrop's sidecars with a moved or deleted photo (``xmp.follow``)."""
        from ..xmp import follow

        try:
            changed = getattr(follow, action)(*args)
        except Exception as exc:  # noqa: BLE001 - the database is right; sidecars are best effort
            self.on_error(f"{path}: cannot update its crop sidecar ({exc})")
            return
        if changed:
            log.info("%s: sidecar %s", path, ", ".join(os.path.basename(str(c)) for c in changed))

    def _has_metadata(self, path: str) -> bool:
        from pathlib import Path

        if self.policy.mode == "embed":
            from ..xmp.writer import read_crop_metadata

            return read_crop_metadata(path) is not None
        from ..xmp.sidecar import sidecar_path

        return sidecar_path(Path(path), self.policy.naming)[0].is_file()

    def _ensure_metadata(self, path: str) -> None:
        """Write the stored crop for a photo that lacks it: a moved or copied photo, or one whose
        sidecar was never written because the daemon was killed between commit and write."""
        if not self.policy.writes:
            return
        try:
            if self._has_metadata(path):
                return
            from ..xmp.fromstore import suggestion_from_store

            suggestion = suggestion_from_store(self.store, path)
        except Exception as exc:  # noqa: BLE001 - the score is safe in the database
            self.on_error(f"{path}: cannot read the stored crop ({exc})")
            return
        if suggestion is None or file_signature(path) is None:
            return
        if self._publish(suggestion).error is None:
            log.info("wrote the stored crop metadata of %s", path)
        self.store.release_metadata([path])  # the hold a killed pass left, if any (jobs.record_scored)

    def _publish(self, suggestion: Suggestion) -> Any:
        out = publish(self.store, suggestion, self.policy, plugins=self.plugins)
        self._report(out)
        return out

    def _report(self, out: Any) -> None:
        # The score is stored either way; metadata is best effort and reported, never fatal.
        if out.error:
            msg = f"cannot write crop metadata: {out.error}"
            log.warning("%s", msg)
            self.on_error(msg)
        elif out.result is not None and out.result.note and "database not updated" in out.result.note:
            self.on_error(f"{out.path}: {out.result.note}")

    def record_batch(self, items: list[tuple[Suggestion, str, Signature]]) -> list[Signature]:
        """Store scored photos in one transaction, then write their crop metadata (the job layer).

        Returns each file's signature afterwards (embedding changes it; the store already has the
        new content hash, so neither the event our own write causes nor a later move of the file
        starts another scoring pass).
        """
        outcomes = record_scored(self.store, [(s, h, _mtime(sig), _size(sig)) for s, h, sig in items], self.policy,
                                 plugins=self.plugins)
        finals = []
        for (s, _h, sig), out in zip(items, outcomes):
            self._report(out)
            embedded = out.result is not None and out.result.mode_used == "embed"
            finals.append((file_signature(s.path) or sig) if embedded else sig)
        return finals

    def record_failure(self, path: str, reason: str, content_hash: str | None, signature: Signature | None) -> None:
        record_failure(self.store, path, reason, content_hash, mtime=_mtime(signature), size=_size(signature),
                       scorer=self.scorer, plugins=self.plugins)

    def mark_gone(self, path: str) -> None:
        if self.store.mark_gone(path):
            log.info("gone: %s", path)
            self._sidecars(path, "forget_photo", path)

    def mark_missing_gone(self, root: str, seen: set[str]) -> int:
        """After a full walk of ``root``: stored photos under it that were not seen and are not
        on disk are gone (deleted while the daemon was down, or an event was lost). Same rule
        as ``scan_folders``."""
        missing = [r.path for r in self.store.photos_under(root) if r.path not in seen and r.status != "gone"
                   and not os.path.exists(r.path)] if os.path.isdir(root) else []
        n = settle_gone(self.store, root, seen)
        for gone in missing:
            self._sidecars(gone, "forget_photo", gone)
        if n:
            log.info("%d photo(s) under %s are gone", n, root)
        return n

    def mark_offline(self, folder: str) -> None:
        n = self.store.mark_offline(folder)
        log.info("marked %d photo(s) under %s offline", n, folder)

    def mark_online(self, folder: str) -> None:
        self.store.mark_online(folder)


def make_pipeline_functions(
    backend: StoreBackend,
) -> tuple[Callable[[str], Any], Callable[[Sequence[Any]], list[Suggestion]], Callable[[str], str], Callable[[str], bool]]:
    """``(load, score, content_hash, accept)`` for :class:`~.pipeline.Pipeline` and the handlers."""
    from ..hashing import content_hash
    from ..imaging import load_image
    from ..suggest import suggest_images

    min_side = int(getattr(backend.scorer, "min_side", 256) or 256)
    load = partial(load_image, min_side=min_side)

    def score(images: Sequence[Any]) -> list[Suggestion]:
        # A photo scored again for a new set keeps the sets its earlier run had (grouped, since
        # one scorer call takes one list of sets); new photos get exactly the configured sets.
        photos = [(img.info.path, ref.content_hash if (ref := backend.store.find_path(img.info.path)) else None)
                  for img in images]
        by_path = {img.info.path: img for img in images}
        scored: dict[str, Suggestion] = {}
        for aspects, paths in group_by_kept_aspects(backend.store, photos, backend.scorer_name,
                                                    backend.weights_hash, backend.aspects):
            for s in suggest_images([by_path[p] for p in paths], backend.scorer, aspects):
                scored[s.path] = s
        return [scored[img.info.path] for img in images]

    return load, score, lambda p: str(content_hash(p)), accepts_photo_name


class PooledScoring:
    """``watch --workers N``: the daemon's batches decoded and scored in N processes
    (:class:`clipcrop_plugin.workers.WorkerPool`, the pool ``scan --workers`` uses), each batch
    split by the sets its photos keep, exactly as the in-process ``score`` function does."""

    def __init__(self, backend: StoreBackend, workers: int, *, settings: Settings | None, weights: str | None,
                 batch_size: int) -> None:
        from ..workers import WorkerPool

        self.backend = backend
        self.workers = max(1, int(workers))
        self.pool = WorkerPool(backend.scorer, self.workers, backend.aspects, settings=settings, weights=weights,
                               batch_size=batch_size, raise_model_change=True)

    def submit(self, photos: list[tuple[str, str]]) -> list[tuple[Any, list[str], tuple[Any, ...]]]:
        b = self.backend
        groups = group_by_kept_aspects(b.store, photos, b.scorer_name, b.weights_hash, b.aspects)
        return [(self.pool.submit(paths, aspects), paths, aspects) for aspects, paths in groups]

    def result(self, handle: list[tuple[Any, list[str], tuple[Any, ...]]]) -> dict[str, Suggestion]:
        return {s.path: s for fut, paths, aspects in handle for s in self.pool.result(fut, paths, aspects)}

    def memory(self) -> list[int]:
        """Resident bytes of each worker process (empty while none runs)."""
        return self.pool.memory()

    def close(self, cancel: bool = False) -> None:
        self.pool.close(cancel=cancel)
