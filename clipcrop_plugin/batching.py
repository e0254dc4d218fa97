"""Micro-batching from a queue: the daemon's scorer and enqueuer and the queue worker share it.

A batch starts with the item a thread blocked for and takes what else arrives within a short
wait, so photos dropped together are scored (or queued) together and a lone photo is not kept
waiting for company.
"""

from __future__ import annotations

import queue
import time
from typing import Any


def gather(source: queue.Queue[Any], first: Any, size: int, wait: float, stop: object) -> tuple[list[Any], bool]:
    """``first`` plus up to ``size - 1`` more items from ``source`` that arrive within ``wait``
    seconds. Returns ``(batch, stopped)``: ``stopped`` is True when the ``stop`` sentinel came
    (it is not in the batch; the caller finishes the batch, then stops)."""
    batch = [first]
    deadline = time.monotonic() + wait
    while len(batch) < size:
        try:
            item = source.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if item is stop:
            return batch, True
        batch.append(item)
    return batch, False
