"""The settle rules ``clipcrop scan`` and the daemon share: unchanged, relinked, copied, gone.

A photo is recognised by its content hash. Split in two steps (before and after hashing)
because the daemon hashes on its decoder threads, not on its database thread; both callers go
through these functions, so the two can never disagree.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store


def _ensure_active(store: Store, photo_id: int, scorer: str, weights_hash: str | None) -> None:
    if store.active_scorer(photo_id) != (scorer, weights_hash):
        store.activate(photo_id, scorer, weights_hash)


def settle_unchanged(store: Store, path: str, size: int, mtime: float, scorer: str, weights_hash: str | None, *,
                     retry_failed: bool = True) -> str | None:
    """Settle ``path`` without reading it when it is unchanged since it was last handled.

    Unchanged means the stored size and mtime match. Returns ``"skipped"`` when this scorer and
    weights already scored it (its run is made active), ``"failed"`` when it failed before and
    ``retry_failed`` is false, else ``None``: the caller must hash the file. ``clipcrop scan``
    retries failures (the user may have installed a decoder since); the daemon does not, so its
    periodic rescans do not repeat the same error forever.
    """
    ref = store.find_path(path)
    if ref is None or ref.size != size or ref.mtime != mtime:
        return None
    if ref.status == "failed":
        return None if retry_failed else "failed"
    if ref.status != "scored" or not ref.content_hash or not store.is_scored(ref.content_hash, scorer, weights_hash):
        return None
    _ensure_active(store, ref.id, scorer, weights_hash)
    return "skipped"


def settle_scored_content(store: Store, path: str, content_hash: str, size: int | None, mtime: float | None,
                          scorer: str, weights_hash: str | None) -> str | None:
    """Settle ``path`` whose content this scorer+weights may already have scored.

    Returns ``"skipped"`` (same file, seen again), ``"relinked"`` (a moved or renamed photo keeps
    its scores), ``"copied"`` (a duplicate gets a copy of the scores), or ``None`` when the content
    is new to this scorer and must be scored.
    """
    if not store.is_scored(content_hash, scorer, weights_hash):
        return None
    ref = store.find_path(path)
    if ref is not None and ref.content_hash == content_hash:
        store.mark_seen(ref.id, mtime=mtime, size=size)
        _ensure_active(store, ref.id, scorer, weights_hash)
        return "skipped"
    pid = store.relink(content_hash, path, mtime=mtime, size=size)
    outcome = "relinked"
    if pid is None:
        src = next((r for r in store.find_by_hash(content_hash) if r.path != path), None)
        if src is None:
            return None
        pid = store.copy_scores(src.id, path, mtime=mtime, size=size)
        outcome = "copied"
    _ensure_active(store, pid, scorer, weights_hash)
    return outcome


def settle_gone(store: Store, root: str, seen: Collection[str]) -> int:
    """After a complete walk of ``root``: stored photos under it that were not seen and are not on
    disk are marked gone; returns how many. A root that is not a folder (unmounted meanwhile) is
    offline, not gone, and is left alone."""
    if not os.path.isdir(root):
        return 0
    n = 0
    for ref in store.photos_under(root):
        if ref.path not in seen and ref.status != "gone" and not os.path.exists(ref.path):
            store.mark_gone(ref.path)
            n += 1
    return n
