"""The pipeline: walk paths, load photos, generate candidates, score in batches, build Suggestions.

Library first: the CLI, the daemon, ``scan`` and the server all call these functions. Per-photo
failures become ``Suggestion(ok=False, error=...)`` with a one-line reason; nothing here raises
because of one bad photo.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from .candidates import AspectRatio, CandidateSet, generate_candidates
from .elements import EXPLANATION_SIZE, MIN_RELATIVE_CHANGE, explain_changes, explain_picks
from .errors import ClipcropError
from .guard import FLAG_NAMES, guard
from .imaging import LoadedImage, load_image
from .photofiles import PHOTO_EXTENSIONS, is_photo_name, iter_photo_paths
from .results import CandidateTable, Subject, Suggestion, first_seen_codes
from .scoring.base import Scorer, ScoreResult
from .subjects import detect_subjects

# The photo filter lives in photofiles (shared with scan and the daemon); re-exported here.
__all__ = ["EXPLANATION_SIZE", "MIN_RELATIVE_CHANGE", "PHOTO_EXTENSIONS", "build_suggestion", "explain_changes", "failed", "find_subjects", "is_photo_name", "iter_photo_paths", "suggest_images",
           "suggest_paths"]

log = logging.getLogger("clipcrop")

def build_suggestion(
    loaded: LoadedImage,
    candidates: CandidateSet,
    result: ScoreResult,
    scorer: Scorer,
    subjects: Sequence[Subject] = (),
) -> Suggestion:
    """Turn one image's raw scores into ranked, explained candidates (a :class:`CandidateTable`).

    The subject guard (:func:`clipcrop_plugin.guard.guard`) runs first, whatever the scorer:
    ranks are 1-based within each candidate set by the guard's order, ``score`` is the guarded
    score and ``improvement`` the score minus the full frame's. ``changes`` are the element
    scores minus the full frame's and ``explanation`` names the largest of them relative to each
    element's spread over the photo's candidates (:func:`explain_changes`).
    """
    raw = np.asarray(result.scores, dtype=np.float64).reshape(-1)
    if raw.shape[0] != len(candidates):
        raise ValueError(f"scorer returned {raw.shape[0]} scores for {len(candidates)} candidates")
    elements = None if result.elements is None else np.asarray(result.elements, dtype=np.float64)
    fi = candidates.full_index
    # A personalization may carry the guard's composition weights it learned from the owner's labels.
    learned = getattr(getattr(scorer, "personal", None), "guard_weights", None)
    g = guard(candidates.boxes, raw, candidates.groups, subjects, candidates.width, candidates.height, fi, learned)
    scores = g.scores
    # Columns, not Crop objects: a photo has hundreds of candidates, and the callers want a few
    # (the Suggestion builds those on demand); a worker process sends the arrays as they are.
    set_names, sets = first_seen_codes(candidates.groups)
    explain = None
    if elements is not None:
        explain = explain_picks(elements - elements[fi], elements, fi).astype(np.int8)  # indices 0-9, -1
    table = CandidateTable(
        boxes=np.asarray(candidates.boxes, dtype=np.int64).reshape(-1, 4), sets=sets, set_names=set_names,
        scores=scores, ranks=np.asarray(g.ranks, dtype=np.int64), improvements=scores - float(scores[fi]),
        full_index=fi, elements=elements, explain=explain,
        flag_rows=g.flag_rows, flag_codes=g.flag_codes, flag_names=FLAG_NAMES, notes=g.note_at,
    )
    return Suggestion(
        path=loaded.info.path,
        ok=True,
        info=loaded.info,
        scorer=getattr(scorer, "name", type(scorer).__name__),
        weights_hash=getattr(scorer, "weights_hash", None),
        device=getattr(scorer, "device", None),
        subjects=list(subjects),
        candidates=table,
    )


def suggest_images(
    loaded: Sequence[LoadedImage], scorer: Scorer, aspects: Sequence[AspectRatio] = (), grid: bool = True,
    *, subjects: Sequence[Future[tuple[list[Subject], str | None]]] | None = None,
) -> list[Suggestion]:
    """Score already-loaded images in one batched scorer call.

    ``subjects``: the subject stage's results already under way, one future per image (from
    :func:`start_subjects`); by default the stage starts here.
    """
    if not loaded:
        return []
    # The subject stage runs on its own thread (OpenCV and numpy release the GIL). Candidates
    # wait for it: ratio sets are composed around the subject, and a photo with letterbox bands
    # or a frame gets every crop inside its picture. suggest_paths starts each photo's detection
    # as soon as the photo is loaded, so it runs while the previous batch is scored.
    if subjects is not None and len(subjects) == len(loaded):
        futures = list(subjects)
    else:
        futures = start_subjects(loaded)
    found = [f.result() for f in futures]
    cands = [generate_candidates(li.info.width, li.info.height, aspects, grid=grid, subjects=subs)
             for li, (subs, _note) in zip(loaded, found)]
    results = scorer.score(list(loaded), cands)
    out = [build_suggestion(li, cs, r, scorer, subs) for li, cs, r, (subs, _note) in zip(loaded, cands, results, found)]
    for s, (_subjects, note) in zip(out, found):
        s.subjects_error = note
    return out


def start_subjects(loaded: Sequence[LoadedImage]) -> list[Future[tuple[list[Subject], str | None]]]:
    """Start the subject stage (:func:`find_subjects`) of each image on the subject thread."""
    pool = _subject_thread()
    return [pool.submit(find_subjects, li) for li in loaded]


# Long-lived single threads by name: the subject stage's (its detectors load once per thread)
# and intake's, which reads photos ahead for suggest_paths.
_stage_threads: dict[str, ThreadPoolExecutor] = {}
_stage_threads_lock = threading.Lock()


def _stage_thread(name: str) -> ThreadPoolExecutor:
    with _stage_threads_lock:
        pool = _stage_threads.get(name)
        if pool is None:
            pool = _stage_threads[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"clipcrop-{name}")
        return pool


def _subject_thread() -> ThreadPoolExecutor:
    """The one long-lived subject-stage thread (its detectors load once per thread)."""
    return _stage_thread("subjects")


def _intake_thread() -> ThreadPoolExecutor:
    """The one long-lived thread that reads photos ahead for :func:`suggest_paths`."""
    return _stage_thread("intake")


def _forget_stage_threads() -> None:
    _stage_threads.clear()  # a forked child has no copy of the threads; make new ones there


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_stage_threads)


def find_subjects(loaded: LoadedImage) -> tuple[list[Subject], str | None]:
    """The subject stage for one photo: ``(subjects, None)``, or ``([], reason)`` when detection failed.

    A detector failure is logged and never fails the photo: it is scored without subjects.
    """
    try:
        return detect_subjects(loaded), None
    except Exception as exc:
        reason = f"subject detection failed ({type(exc).__name__}: {exc})"
        log.warning("%s: %s; scored without subjects", loaded.info.path, reason)
        log.debug("subject detection of %s failed", loaded.info.path, exc_info=True)
        return [], reason


def failed(path: str | os.PathLike[str], reason: str, scorer: Scorer | None = None) -> Suggestion:
    """The Suggestion recorded for a photo that could not be scored."""
    return Suggestion(path=str(path), ok=False, error=reason, scorer=getattr(scorer, "name", None))


def _score_batch(
    batch: list[LoadedImage], scorer: Scorer, aspects: Sequence[AspectRatio], grid: bool,
    subjects: Sequence[Future[tuple[list[Subject], str | None]]] | None = None,
) -> list[Suggestion]:
    try:
        return suggest_images(batch, scorer, aspects, grid, subjects=subjects)
    except Exception as exc:
        if len(batch) == 1:
            reason = str(exc) if isinstance(exc, ClipcropError) else f"scoring failed ({type(exc).__name__}: {exc})"
            log.debug("scoring %s failed", batch[0].info.path, exc_info=True)
            return [failed(batch[0].info.path, reason, scorer)]
        # One photo can spoil a batch (odd size, device error): retry one by one to isolate it.
        futures: list[Future[tuple[list[Subject], str | None]] | None] = (
            list(subjects) if subjects is not None and len(subjects) == len(batch) else [None] * len(batch)
        )
        return [s for li, f in zip(batch, futures) for s in _score_batch([li], scorer, aspects, grid,
                                                                         None if f is None else [f])]


def suggest_paths(
    paths: Iterable[str | os.PathLike[str]],
    scorer: Scorer,
    aspects: Sequence[AspectRatio] = (),
    *,
    batch_size: int = 8,
    grid: bool = True,
    recursive: bool = True,
) -> Iterator[Suggestion]:
    """Suggest crops for every photo under ``paths``, in walk order, ``batch_size`` at a time.

    Never raises for a single photo: unreadable files and scoring failures come back as
    ``ok=False`` suggestions carrying the one-line reason.
    """
    min_side = int(getattr(scorer, "min_side", 256) or 256)
    batch_size = max(1, int(batch_size))
    slots: list[Suggestion | LoadedImage] = []
    found: list[Future[tuple[list[Subject], str | None]]] = []

    def flush() -> Iterator[Suggestion]:
        loaded = [s for s in slots if isinstance(s, LoadedImage)]
        scored = iter(_score_batch(loaded, scorer, aspects, grid, list(found))) if loaded else iter(())
        for s in slots:
            yield next(scored) if isinstance(s, LoadedImage) else s
        slots.clear()
        found.clear()

    # Intake of the next photos runs ahead on its own thread (up to two batches), each photo's
    # subject stage on the subject thread as soon as it is read, while this thread makes
    # candidates, scores and builds suggestions. Three stages on three threads: with intake on
    # the subject thread, that thread was the slowest stage and the other core sat idle.
    # Decoding, OpenCV and numpy release the GIL.
    pool = _intake_thread()
    walk = iter(iter_photo_paths(paths, recursive=recursive))
    ahead: deque[Future[Suggestion | tuple[LoadedImage, Future[tuple[list[Subject], str | None]]]]] = deque()
    walk_error: BaseException | None = None
    while True:
        while walk_error is None and len(ahead) < 2 * batch_size:
            try:
                path = next(walk)
            except StopIteration:
                break
            except BaseException as exc:  # the walk's own error surfaces after the photos before it
                walk_error = exc
                break
            ahead.append(pool.submit(_prepare, path, min_side, scorer, _subject_thread()))
        if not ahead:
            break
        item = ahead.popleft().result()
        if isinstance(item, Suggestion):
            slots.append(item)
        else:
            slots.append(item[0])
            found.append(item[1])
        pending = len(found)
        if pending >= batch_size or (pending == 0 and slots):
            yield from flush()
    if slots:
        yield from flush()
    if walk_error is not None:
        raise walk_error


def _prepare(
    path: str | os.PathLike[str], min_side: int, scorer: Scorer, subjects: ThreadPoolExecutor
) -> Suggestion | tuple[LoadedImage, Future[tuple[list[Subject], str | None]]]:
    """Intake of one photo, its subject stage started on ``subjects``; a failed Suggestion when
    it cannot be read."""
    try:
        loaded = load_image(path, min_side=min_side)
    except ClipcropError as exc:
        return failed(path, str(exc), scorer)
    except Exception as exc:  # last resort: intake must never stop a batch
        log.debug("loading %s failed", path, exc_info=True)
        return failed(path, f"{path}: cannot read ({type(exc).__name__}: {exc})", scorer)
    return loaded, subjects.submit(find_subjects, loaded)
