"""Non-destructive crop metadata: XMP sidecars and opt-in lossless embedding (SPEC 6).

Public API: :func:`write_crop_metadata`, :func:`clear_crop_metadata`, :func:`read_crop_metadata`
and :class:`WriteResult`; the orientation maths is in :mod:`.orientation`.
"""

from __future__ import annotations

from .atomic import clean_stale_temps, is_temp_name
from .orientation import stored_to_upright, upright_to_stored
from .writer import WriteResult, clear_crop_metadata, read_crop_metadata, write_crop_metadata

__all__ = [
    "WriteResult",
    "clean_stale_temps",
    "clear_crop_metadata",
    "is_temp_name",
    "read_crop_metadata",
    "stored_to_upright",
    "upright_to_stored",
    "write_crop_metadata",
]
