"""Candidate crops: GAIC grid anchors, exact aspect-ratio sets, and the full frame (SPEC 3).

(Interface fixed by the foundation; generators are implemented below.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AspectRatio:
    """An exact width:height ratio such as 4:5."""

    w: int
    h: int

    @property
    def name(self) -> str:
        return f"{self.w}:{self.h}"

    @property
    def value(self) -> float:
        return self.w / self.h


@dataclass
class CandidateSet:
    """All candidate boxes of one image.

    ``boxes`` is an (N, 4) int64 array of x1, y1, x2, y2 in full-resolution upright pixels
    (x2, y2 exclusive); ``groups[i]`` names the set box ``i`` belongs to (``"grid"``, ``"full"``,
    or a ratio name like ``"1:1"``). Exactly one box is the full frame, at ``full_index``.
    """

    width: int
    height: int
    boxes: np.ndarray
    groups: list[str]
    full_index: int

    def __len__(self) -> int:
        return int(self.boxes.shape[0])
