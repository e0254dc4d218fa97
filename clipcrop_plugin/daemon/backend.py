"""The daemon's bindings to the rest of clipcrop: the store, the scorer, the XMP writer.

Everything here runs on the pipeline's DB thread (the ``StoreBackend`` methods) or is a plain
function the pipeline's other threads call (``make_pipeline_functions``). The skip/relink
rules are the store's: a moved photo is relinked by content hash, a copy gets the scores
copied, and only content no run of this scorer+weights has seen is scored.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

from ..config import Settings
from ..results import Suggestion
from .stability import Signature, file_signature

log = logging.getLogger("clipcrop.daemon")


def iter_photos(top: str) -> Iterator[str]:
    """Photo files under ``top``, walked the way ``clipcrop suggest``/``scan`` walk."""
    from ..suggest import iter_photo_paths

    if not os.path.isdir(top):
        return
    for p in iter_photo_paths([top]):
        yield os.fspath(p)


def accepts_photo_name(path: str) -> bool:
    """Whether an event path names a photo (the foundation's suffix and temp-name rules)."""
    from ..suggest import is_photo_name

    return is_photo_name(os.path.basename(path))


def _mtime(sig: Signature | None) -> float | None:
    return None if sig is None else sig[1]


def _size(sig: Signature | None) -> int | None:
    return None if sig is None else sig[0]


class StoreBackend:
    """A :class:`~clipcrop_plugin.store.Store` plus the scorer identity and the metadata mode."""

    def __init__(
        self, store: Any, scorer: Any, aspects: list[Any], *, embed: bool, naming: str, settings: Settings | None = None
    ) -> None:
        from ..hooks import get_plugin_manager

        self.store = store
        self.settings = settings or Settings()
        self.plugins = get_plugin_manager()
        self.scorer = scorer
        self.aspects = aspects
        self.embed = embed
        self.naming = naming
        self.scorer_name: str = getattr(scorer, "name", type(scorer).__name__)
        self.weights_hash: str | None = getattr(scorer, "weights_hash", None)
        # Set by the service: called with an error line when metadata cannot be written.
        self.on_error: Callable[[str], None] = lambda _m: None

    @classmethod
    def open(
        cls,
        url: str,
        *,
        settings: Settings,
        scorer: str,
        weights: str | None,
        device: str,
        aspects: Sequence[str],
        embed: bool,
    ) -> StoreBackend:
        """Open the database (upgrading it) and load the scorer; raises typed clipcrop errors."""
        from ..candidates import parse_aspect
        from ..scoring.registry import load_scorer
        from ..store import Store

        ratios = [parse_aspect(a) for a in aspects]  # bad input fails before anything opens
        store = Store.open(url, settings=settings)
        try:
            sc = load_scorer(scorer, settings=settings, device=device, weights=weights)
        except BaseException:
            store.close()
            raise
        return cls(store, sc, ratios, embed=embed, naming=settings.sidecar_naming, settings=settings)

    def close(self) -> None:
        self.store.close()

    # -- Backend protocol (DB thread) ----------------------------------------------------------
    # The decisions are clipcrop scan's (``scan.settle_unchanged`` / ``scan.settle_scored_content``);
    # they are split in two only because the daemon hashes files on its decoder threads, not on
    # the database thread.

    def already_done(self, path: str, signature: Signature) -> bool:
        """Same path, size and mtime as when this scorer scored it (or failed on it): nothing to do."""
        from ..scan import settle_unchanged

        outcome = settle_unchanged(self.store, path, signature[0], signature[1], self.scorer_name,
                                   self.weights_hash, retry_failed=False)
        if outcome == "skipped":
            self._ensure_metadata(path)
        return outcome is not None

    def is_scored(self, content_hash: str) -> bool:
        return bool(self.store.is_scored(content_hash, self.scorer_name, self.weights_hash))

    def relink(self, content_hash: str, path: str, signature: Signature) -> None:
        """Already-scored content at ``path``: unchanged (seen), moved (relink) or a copy (copy scores)."""
        from ..scan import settle_scored_content

        outcome = settle_scored_content(self.store, path, content_hash, _size(signature), _mtime(signature),
                                        self.scorer_name, self.weights_hash)
        if outcome is None:
            return
        if outcome != "skipped":
            log.info("%s %s (same content as a scored photo; scores kept)", outcome, path)
        self._ensure_metadata(path)

    def _has_metadata(self, path: str) -> bool:
        from pathlib import Path

        if self.embed:
            from ..xmp.writer import read_crop_metadata

            return read_crop_metadata(path) is not None
        from ..xmp.sidecar import sidecar_path

        return sidecar_path(Path(path), self.naming)[0].is_file()

    def _ensure_metadata(self, path: str) -> None:
        """Write the stored crop for a photo that lacks it: a moved or copied photo, or one whose
        sidecar was never written because the daemon was killed between commit and write."""
        try:
            if self._has_metadata(path):
                return
            from ..xmp.fromstore import suggestion_from_store

            suggestion = suggestion_from_store(self.store, path)
        except Exception as exc:  # noqa: BLE001 - the score is safe in the database
            self.on_error(f"{path}: cannot read the stored crop ({exc})")
            return
        sig = file_signature(path)
        if suggestion is None or sig is None:
            return
        self._write_metadata(suggestion, sig)
        log.info("wrote the stored crop metadata of %s", path)

    def record_batch(self, items: list[tuple[Suggestion, str, Signature]]) -> list[Signature]:
        """Store scored photos in one transaction, then write their crop metadata.

        Returns each file's signature afterwards (embedding changes it). The database comes
        first: after a crash between the two, the photo is scored and only its sidecar is
        missing, never the other way round.
        """
        self.store.record_suggestions([(s, h, _mtime(sig), _size(sig)) for s, h, sig in items])
        finals = [self._write_metadata(s, sig) for s, _h, sig in items]
        for s, _h, _sig in items:
            self._hook("photo_scored", photo_path=s.path, suggestion=s)
        return finals

    def _hook(self, name: str, **kwargs: Any) -> None:
        from ..hooks import notify

        notify(self.plugins, name, **kwargs)

    def _write_metadata(self, suggestion: Suggestion, signature: Signature) -> Signature:
        try:
            from ..xmp.writer import write_crop_metadata

            result = write_crop_metadata(
                suggestion.path,
                suggestion,
                mode="embed" if self.embed else "sidecar",
                naming=self.naming,
                aspects=[a.name for a in self.aspects] or None,
                keep_margin=self.settings.keep_margin,
            )
        except Exception as exc:  # noqa: BLE001 - the score is stored; metadata is best effort
            msg = f"{suggestion.path}: cannot write crop metadata ({exc})"
            log.warning("%s", msg)
            self.on_error(msg)
            return signature
        self._hook("metadata_written", photo_path=suggestion.path, written=[str(result.path_written)], cleared=False)
        if result.mode_used != "embed":
            return signature
        # Embedding rewrote the photo, so its bytes (content hash), size and mtime changed. Store
        # the same scores under the new identity, so that neither the event our own write causes
        # nor a later move of the file starts another scoring pass.
        new_sig = file_signature(suggestion.path) or signature
        try:
            from ..hashing import content_hash

            new_hash = result.sha256 or content_hash(suggestion.path)
            self.store.record_suggestion(suggestion, new_hash, mtime=_mtime(new_sig), size=_size(new_sig))
        except Exception as exc:  # noqa: BLE001
            self.on_error(f"{suggestion.path}: cannot update the database after embedding ({exc})")
        return new_sig

    def record_failure(self, path: str, reason: str, content_hash: str | None, signature: Signature | None) -> None:
        from ..suggest import failed

        self.store.record_failure(path, reason, content_hash, mtime=_mtime(signature), size=_size(signature))
        self._hook("photo_scored", photo_path=path, suggestion=failed(path, reason, self.scorer))

    def mark_gone(self, path: str) -> None:
        if self.store.mark_gone(path):
            log.info("gone: %s", path)

    def mark_missing_gone(self, root: str, seen: set[str]) -> int:
        """After a full walk of ``root``: stored photos under it that were not seen and are not
        on disk are gone (deleted while the daemon was down, or an event was lost). Same rule
        as ``scan_folders``."""
        n = 0
        if not os.path.isdir(root):
            return 0  # unmounted meanwhile: offline, not gone
        for ref in self.store.photos_under(root):
            if ref.path not in seen and ref.status != "gone" and not os.path.exists(ref.path):
                self.store.mark_gone(ref.path)
                n += 1
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
        return suggest_images(images, backend.scorer, backend.aspects)

    return load, score, lambda p: str(content_hash(p)), accepts_photo_name
