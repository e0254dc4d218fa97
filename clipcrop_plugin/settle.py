"""The settle rules ``clipcrop scan`` and the daemon share: unchanged, relinked, copied, gone.

A photo is recognised by its content hash. Split in two steps (before and after hashing)
because the daemon hashes on its decoder threads, not on its database thread; both callers go
through these functions, so the two can never disagree.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from .candidates import AspectRatio, parse_aspect
from .errors import ConfigError

if TYPE_CHECKING:
    from .store import Store


def _ensure_active(store: Store, photo_id: int, scorer: str, weights_hash: str | None) -> None:
    if store.active_scorer(photo_id) != (scorer, weights_hash):
        store.activate(photo_id, scorer, weights_hash)


def settle_unchanged(store: Store, path: str, size: int, mtime: float, scorer: str, weights_hash: str | None, *,
                     retry_failed: bool = True, sets: Collection[str] | None = None) -> str | None:
    """Settle ``path`` without reading it when it is unchanged since it was last handled.

    Unchanged means the stored size and mtime match. Returns ``"skipped"`` when this scorer and
    weights already scored it (its run is made active), ``"failed"`` when it failed before and
    ``retry_failed`` is false, else ``None``: the caller must hash the file. ``clipcrop scan``
    retries failures (the user may have installed a decoder since); the daemon does not, so its
    periodic rescans do not repeat the same error forever. With ``sets`` (the candidate sets this
    pass asks for), a run that lacks one of them does not count: the photo is scored again.
    """
    ref = store.find_path(path)
    if ref is None or ref.size != size or ref.mtime != mtime:
        return None
    if ref.status == "failed":
        return None if retry_failed else "failed"
    if (ref.status != "scored" or not ref.content_hash
            or not store.is_scored(ref.content_hash, scorer, weights_hash, sets=sets)):
        return None
    _ensure_active(store, ref.id, scorer, weights_hash)
    return "skipped"


def settle_scored_content(store: Store, path: str, content_hash: str, size: int | None, mtime: float | None,
                          scorer: str, weights_hash: str | None, *, sets: Collection[str] | None = None) -> str | None:
    """Settle ``path`` whose content this scorer+weights may already have scored.

    Returns ``"skipped"`` (same file, seen again), ``"relinked"`` (a moved or renamed photo keeps
    its scores), ``"copied"`` (a duplicate gets a copy of the scores), or ``None`` when the content
    is new to this scorer (or lacks one of ``sets``) and must be scored.
    """
    if not store.is_scored(content_hash, scorer, weights_hash, sets=sets):
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


def required_sets(aspects: Iterable[AspectRatio], grid: bool = True) -> frozenset[str]:
    """The candidate set names a pass asks for: ``grid`` (unless off) and every ratio."""
    return frozenset(a.name for a in aspects) | ({"grid"} if grid else set())


def aspects_to_keep(store: Store, content_hash: str | None, scorer: str, weights_hash: str | None,
                    aspects: Sequence[AspectRatio]) -> tuple[AspectRatio, ...]:
    """``aspects`` plus the ratio sets this photo's earlier run already has.

    A photo scored again because a newly asked-for set is missing keeps the sets it had, since
    its new run replaces the old one (the trunk pass is shared, so the extra sets cost little).
    """
    wanted = {a.name for a in aspects}
    out = list(aspects)
    found = store.run_sets(content_hash, scorer, weights_hash) if content_hash else None
    for name in sorted(found or ()):
        if name != "grid" and name not in wanted:
            try:
                out.append(parse_aspect(name))
            except ConfigError:  # a set this version no longer understands is dropped
                continue
            wanted.add(name)
    return tuple(out)


def group_by_kept_aspects(store: Store, photos: Sequence[tuple[str, str | None]], scorer: str,
                          weights_hash: str | None, aspects: Sequence[AspectRatio]
                          ) -> list[tuple[tuple[AspectRatio, ...], list[str]]]:
    """``(path, content_hash)`` pairs grouped by the sets each must be scored with, in first-seen
    order: usually one group (all new photos, or all missing the same new set)."""
    groups: dict[tuple[str, ...], tuple[tuple[AspectRatio, ...], list[str]]] = {}
    for path, content_hash in photos:
        keep = aspects_to_keep(store, content_hash, scorer, weights_hash, aspects)
        groups.setdefault(tuple(a.name for a in keep), (keep, []))[1].append(path)
    return list(groups.values())


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
