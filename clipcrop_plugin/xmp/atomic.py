"""Atomic file replacement for XMP writers: a re-export of :mod:`clipcrop_plugin.safeio`.

Kept so ``clipcrop_plugin.xmp.atomic`` stays importable; the one implementation (symlink and
read-only refusal, temp-then-rename, deferred folder fsync) lives in ``safeio``.
"""

from __future__ import annotations

import os  # noqa: F401 - tests patch ``atomic.os`` (the same module object safeio uses)

from ..safeio import (
    TEMP_MARK,
    AtomicFile,
    atomic_delete,
    atomic_write,
    clean_stale_temps,
    deferred_dir_sync,
    is_temp_name,
)

__all__ = [
    "TEMP_MARK", "AtomicFile", "atomic_delete", "atomic_write", "clean_stale_temps", "deferred_dir_sync",
    "is_temp_name",
]
