"""A pool of worker processes that decode and score photos for ``scan``/``watch --workers N``.

One Python process decodes and scores on one core (the GIL), so an 8-core NAS would sit 7/8
idle. The pool moves the per-photo work into ``N`` processes; the parent keeps everything that
touches the database (the settle checks and :func:`clipcrop_plugin.jobs.record_scored`, one
transaction per batch), so the exactly-once rules are those of a single-process scan: a photo
is done when its batch is committed, and a batch in flight when the scan stops is simply
scored again next time.

Two modes, chosen from the scorer the parent loaded:

* ``score`` (CPU scorers): each worker loads its own copy of the scorer once and returns
  finished :class:`~clipcrop_plugin.results.Suggestion` objects. They travel as they are: a
  Suggestion pickles its candidates as numpy columns, never as ``Crop`` objects, and the
  parent's store writes from the columns (rebuilding ~400 objects per photo in the parent was
  what kept two workers from doubling one's speed).
* ``decode`` (a scorer on a GPU/MPS device): workers only decode (the part that is CPU-bound);
  the parent's one scorer owns the device and scores whole batches, so N processes never
  fight over GPU memory.

Worker processes are started with ``spawn`` (the daemon has threads; ``fork`` with threads can
deadlock) and ignore SIGINT: Ctrl-C is the parent's to handle, which drops the batches in
flight and stops the pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from .candidates import AspectRatio
from .config import Settings
from .errors import ClipcropError
from .imaging import LoadedImage, load_image
from .results import Suggestion
from .scoring.base import Scorer
from .suggest import failed, suggest_paths

__all__ = ["ModelChanged", "ScorerSpec", "WorkerPool", "default_workers", "resolve_workers"]

log = logging.getLogger("clipcrop.workers")

_SCORER: Scorer | None = None  # the worker process's own scorer (score mode)
_MISMATCH: str | None = None  # why this worker's scorer is not the parent's (another model version)


class ModelChanged(ClipcropError):
    """A worker process loaded another model version than the parent scores with (the active
    version was switched after the parent loaded its scorer): nothing is scored with it."""


def default_workers() -> int:
    """The number of CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(requested: int | None, settings: Settings | None = None) -> int:
    """``--workers`` if given, else the ``workers`` setting, where 0 (the default) means one per core."""
    n = requested if requested is not None else int(getattr(settings, "workers", 0) or 0)
    return default_workers() if n <= 0 else n


@dataclass(frozen=True)
class ScorerSpec:
    """How a worker process loads the same scorer as the parent (everything picklable)."""

    name: str
    device: str = "cpu"
    weights: str | None = None
    settings: Settings | None = None
    weights_hash: str | None = None

    @classmethod
    def of(cls, scorer: Scorer, settings: Settings | None = None, weights: str | None = None) -> ScorerSpec:
        """The spec of an already loaded scorer (its resolved name, device and weights)."""
        return cls(getattr(scorer, "name", type(scorer).__name__), str(getattr(scorer, "device", None) or "cpu"),
                   weights, settings, getattr(scorer, "weights_hash", None))

    def on_accelerator(self) -> bool:
        """True when the scorer runs on a GPU/MPS device (then only the parent may score)."""
        return self.device.split(":")[0] in ("cuda", "mps")


def _exit_with_parent(parent: int) -> None:
    # A parent killed with SIGKILL (the OOM killer, `kill -9` on the daemon) cannot stop its
    # pool, and an idle worker blocked on its call queue would live on forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _share_cores(threads: int) -> None:
    """Cap OpenCV's and torch's own thread pools at this worker's share of the cores.

    Each library sizes its pool to every core of the machine; N workers each running such a pool
    oversubscribe the cores N times over (a CLIP scorer on a CPU: N torch pools of every core).
    """
    try:
        import cv2

        cv2.setNumThreads(threads)
    except Exception:  # noqa: BLE001 - no OpenCV (saliency only), or a wheel without the call
        pass
    torch = sys.modules.get("torch")  # only a CLIP scorer loads it; never imported just for this
    if torch is not None:
        torch.set_num_threads(threads)


# glibc's mallopt parameters (malloc.h) and the values a worker uses: see _steady_heap.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
HEAP_TRIM_THRESHOLD = 32 << 20
HEAP_MMAP_THRESHOLD = 4 << 20


def _steady_heap() -> bool:
    """Keep freed memory in this process's heap instead of handing it back to the kernel at once.

    A worker allocates and frees the same few-hundred-KB arrays for every photo (decoded pixels,
    feature maps), on three threads, each with its own malloc arena. With glibc's defaults each
    arena's top is trimmed back to the kernel as soon as 128 KB are free and larger blocks are
    mmapped afresh, so every photo page-faults its arrays in again: 2.6-3.5 ms of system time per
    photo in a worker (0.8 in a long-lived process), 7-10% of its CPU. Fixed thresholds (trim
    above 32 MB free, mmap only blocks over 4 MB) bring it to 0.3-0.6 ms; resident memory stays
    within a few MB. Returns whether it applied (glibc only; elsewhere the allocator is left alone).
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)) and bool(mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD))


def _init_worker(spec: ScorerSpec, mode: str, threads: int = 0) -> None:
    # The parent handles Ctrl-C; a worker killed by it mid-batch would only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _steady_heap()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="clipcrop-parent-watch").start()
    logging.getLogger("clipcrop").setLevel(logging.WARNING)
    global _SCORER, _MISMATCH
    if mode == "score":
        from .scoring.registry import load_scorer

        _SCORER = load_scorer(spec.name, settings=spec.settings, device=spec.device, weights=spec.weights)
        got = getattr(_SCORER, "weights_hash", None)
        if got != spec.weights_hash:
            # Raised per job, not here: an initializer that raises breaks the whole pool, and the
            # parent must learn *why* (it switches versions, then starts fresh workers).
            _MISMATCH = f"worker loaded {spec.name} weights {got}, the parent has {spec.weights_hash}"
    if threads > 0:
        _share_cores(threads)  # after the scorer, which may have loaded torch


def _score_job(paths: list[str], aspects: tuple[AspectRatio, ...], grid: bool, batch_size: int) -> list[Suggestion]:
    if _MISMATCH is not None:
        raise ModelChanged(_MISMATCH)
    assert _SCORER is not None
    return list(suggest_paths(paths, _SCORER, aspects, batch_size=batch_size, grid=grid, recursive=False))


def _decode_job(paths: list[str], min_side: int) -> list[LoadedImage | Suggestion]:
    out: list[LoadedImage | Suggestion] = []
    for p in paths:
        try:
            out.append(load_image(p, min_side=min_side))
        except ClipcropError as exc:
            out.append(failed(p, str(exc)))
        except Exception as exc:  # noqa: BLE001 - intake must never stop a batch
            out.append(failed(p, f"{p}: cannot read ({type(exc).__name__}: {exc})"))
    return out


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


class WorkerPool:
    """``workers`` processes scoring (or decoding) batches of paths for the parent's ``scorer``.

    ``submit(paths)`` returns a future of one :class:`Suggestion` per path, in order; in
    ``decode`` mode the future's result is finished by :meth:`result` in the parent (which
    scores with its own ``scorer``). The processes start lazily on the first submit, so a scan
    that finds nothing new pays nothing.
    """

    def __init__(self, scorer: Scorer, workers: int, aspects: Sequence[AspectRatio] = (), *,
                 settings: Settings | None = None, weights: str | None = None, grid: bool = True,
                 batch_size: int = 8, mode: str | None = None, raise_model_change: bool = False) -> None:
        self.scorer, self.workers = scorer, max(1, int(workers))
        # False (scan): a batch whose workers loaded another model version fails its photos with
        # the reason; True (the daemon): :meth:`result` raises ModelChanged and the caller switches.
        self.raise_model_change = raise_model_change
        self.aspects, self.grid, self.batch_size = tuple(aspects), grid, max(1, int(batch_size))
        self.spec = ScorerSpec.of(scorer, settings, weights)
        self.mode = mode or ("decode" if self.spec.on_accelerator() else "score")
        self.min_side = int(getattr(scorer, "min_side", 256) or 256)
        self._pool: ProcessPoolExecutor | None = None

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is not None and getattr(self._pool, "_broken", False):
            # A worker died (out of memory, a crashing decoder): its batch failed; start afresh
            # rather than refusing every later batch.
            log.warning("a worker process died; starting new ones")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self.spec, self.mode, max(1, default_workers() // self.workers)))
        return self._pool

    def submit(self, paths: Sequence[str], aspects: Sequence[AspectRatio] | None = None) -> Future[Any]:
        """Start scoring ``paths`` (one batch) in a worker, with ``aspects`` (default: the pool's);
        see :meth:`result`."""
        pool = self._ensure()
        if self.mode == "score":
            sets = self.aspects if aspects is None else tuple(aspects)
            return pool.submit(_score_job, list(paths), sets, self.grid, self.batch_size)
        return pool.submit(_decode_job, list(paths), self.min_side)

    def result(self, future: Future[Any], paths: Sequence[str],
               aspects: Sequence[AspectRatio] | None = None) -> list[Suggestion]:
        """The suggestions of a submitted batch, one per path (a broken worker fails its photos);
        ``aspects``: as given to :meth:`submit`."""
        try:
            got = future.result()
        except ModelChanged:
            if self.raise_model_change:
                raise
            reason = "the active model version changed during the scan; scan again"
            return [failed(p, f"{p}: {reason}", self.scorer) for p in paths]
        except Exception as exc:  # noqa: BLE001 - a crashed worker fails its batch, not the scan
            reason = f"worker process failed ({type(exc).__name__}: {exc})"
            return [failed(p, f"{p}: {reason}", self.scorer) for p in paths]
        if self.mode == "decode":
            from .suggest import _score_batch  # the pipeline's own batch-with-isolation rule

            loaded = [x for x in got if isinstance(x, LoadedImage)]
            sets = self.aspects if aspects is None else tuple(aspects)
            scored = iter(_score_batch(loaded, self.scorer, sets, self.grid)) if loaded else iter(())
            got = [next(scored) if isinstance(x, LoadedImage) else x for x in got]
        return list(got)

    def memory(self) -> list[int]:
        """Resident set size in bytes of each worker process (empty before the first batch)."""
        if self._pool is None:
            return []
        import psutil

        out = []
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            try:
                out.append(int(psutil.Process(proc.pid).memory_info().rss))
            except (psutil.Error, ValueError):
                continue
        return out

    def close(self, cancel: bool = False) -> None:
        """Stop the processes; ``cancel`` drops batches not yet started (Ctrl-C)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)
