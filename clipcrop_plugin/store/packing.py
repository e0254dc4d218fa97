"""Compact BLOB encoding of every candidate of a scoring run.

A run's candidates are one BLOB instead of ~90 rows: rows cost ~40 bytes of SQLite overhead
each before any payload, and nothing queries a rank-57 candidate by value. Layout (little endian),
zlib-compressed (grid boxes repeat coordinates, so they compress well)::

    b"CC1" | box dtype code (b"H" uint16 or b"i" int32) | uint32 N
    boxes  (N, 4) x1 y1 x2 y2
    scores (N,)   float32
    sets   (N,)   uint8   index into the run's ``aspects`` list
    ranks  (N,)   uint16  1-based rank within the set

Element scores are stored separately, quantized to uint8 over the run's own [min, max]
(precision: 1/255 of that range, enough to rank and explain; the top candidates of each set keep
exact float32 copies in their ``crops`` rows)::

    b"EQ1" | float32 min | float32 max | uint16 columns | (N, columns) uint8

A run's subjects (faces, people, the salient region; a handful per photo) are 18 bytes each::

    b"SB1" | N records of: uint8 kind (index into SUBJECT_KINDS) | uint8 score x 255 | int32[4] box

An empty subject list is the bare magic; ``NULL`` means the run has no subject data (recorded
before subjects existed, or detection failed).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import StoreError
from ..results import Subject

_MAGIC = b"CC1"
# Stored codes: append only, never reorder (rows written by older versions keep their meaning).
SUBJECT_KINDS = ("face", "profile_face", "person", "salient", "content")  # append only: stored as the index
_SUBJECT_MAGIC = b"SB1"
_SUBJECT = struct.Struct("<BB4i")


@dataclass
class PackedCandidates:
    """Decoded candidates of one run."""

    boxes: np.ndarray  # (N, 4) int64
    scores: np.ndarray  # (N,) float32
    sets: np.ndarray  # (N,) uint8
    ranks: np.ndarray  # (N,) uint16


def pack_candidates(boxes: np.ndarray, scores: np.ndarray, sets: np.ndarray, ranks: np.ndarray) -> bytes:
    """Encode candidates; boxes use uint16 when every coordinate fits, else int32."""
    boxes = np.asarray(boxes)
    n = int(boxes.shape[0])
    small = n == 0 or (int(boxes.min()) >= 0 and int(boxes.max()) < 65536)
    code = b"H" if small else b"i"
    body = b"".join(
        (
            np.ascontiguousarray(boxes, dtype="<u2" if small else "<i4").tobytes(),
            np.ascontiguousarray(scores, dtype="<f4").tobytes(),
            np.ascontiguousarray(sets, dtype="u1").tobytes(),
            np.ascontiguousarray(ranks, dtype="<u2").tobytes(),
        )
    )
    return _MAGIC + code + struct.pack("<I", n) + zlib.compress(body, 1)


def unpack_candidates(blob: bytes) -> PackedCandidates:
    """Decode :func:`pack_candidates` output; raises ``StoreError`` on foreign data."""
    if len(blob) < 8 or blob[:3] != _MAGIC:
        raise StoreError("stored candidates are in an unknown format")
    code = blob[3:4]
    (n,) = struct.unpack("<I", blob[4:8])
    body = zlib.decompress(blob[8:])
    bdt = "<u2" if code == b"H" else "<i4"
    bsize = 2 if code == b"H" else 4
    off = 0
    boxes = np.frombuffer(body, bdt, n * 4, off).reshape(n, 4).astype(np.int64)
    off += n * 4 * bsize
    scores = np.frombuffer(body, "<f4", n, off).copy()
    off += n * 4
    sets = np.frombuffer(body, "u1", n, off).copy()
    off += n
    ranks = np.frombuffer(body, "<u2", n, off).copy()
    return PackedCandidates(boxes, scores, sets, ranks)


def pack_elements(elements: np.ndarray) -> bytes:
    """(N, K) element scores quantized to uint8 over their own range."""
    el = np.asarray(elements, dtype=np.float32)
    lo, hi = (float(el.min()), float(el.max())) if el.size else (0.0, 0.0)
    span = hi - lo
    q = np.zeros(el.shape, np.uint8) if span <= 0 else np.rint((el - lo) * (255.0 / span)).astype(np.uint8)
    cols = el.shape[1] if el.ndim == 2 else 0
    return b"EQ1" + struct.pack("<ffH", lo, hi, cols) + q.tobytes()


def unpack_elements(blob: bytes, n: int) -> np.ndarray:
    """(N, K) float32 from :func:`pack_elements` output (error <= range/510)."""
    if blob[:3] != b"EQ1":
        raise StoreError("stored element scores are in an unknown format")
    lo, hi, cols = struct.unpack("<ffH", blob[3:13])
    q = np.frombuffer(blob, np.uint8, n * cols, 13).reshape(n, cols).astype(np.float32)
    return lo + q * ((hi - lo) / 255.0)


def pack_vector(values: list[float] | np.ndarray) -> bytes:
    """Exact float32 vector (the ten element scores of one queryable crop)."""
    return np.asarray(values, dtype="<f4").tobytes()


def unpack_vector(blob: bytes | None) -> list[float] | None:
    return None if blob is None else [float(v) for v in np.frombuffer(blob, "<f4")]


def pack_subjects(subjects: list[Subject]) -> bytes:
    """Encode a run's subjects (score kept to 1/255; kinds outside :data:`SUBJECT_KINDS` dropped)."""
    out = [_SUBJECT_MAGIC]
    for sub in subjects:
        if sub.kind not in SUBJECT_KINDS:
            continue
        score = int(round(min(max(float(sub.score), 0.0), 1.0) * 255))
        out.append(_SUBJECT.pack(SUBJECT_KINDS.index(sub.kind), score, *(int(v) for v in sub.box)))
    return b"".join(out)


def unpack_subjects(blob: bytes | None) -> list[Subject]:
    """Decode :func:`pack_subjects` output; ``NULL`` gives ``[]``; raises ``StoreError`` on foreign data."""
    if blob is None:
        return []
    if blob[:3] != _SUBJECT_MAGIC or (len(blob) - 3) % _SUBJECT.size:
        raise StoreError("stored subjects are in an unknown format")
    out = []
    for kind, score, x1, y1, x2, y2 in _SUBJECT.iter_unpack(blob[3:]):
        if kind < len(SUBJECT_KINDS):
            out.append(Subject(SUBJECT_KINDS[kind], (x1, y1, x2, y2), round(score / 255.0, 4)))
    return out
