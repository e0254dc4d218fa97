"""The scorer protocol every scorer (built in or from a plugin) implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..candidates import CandidateSet
from ..imaging import LoadedImage


@dataclass
class ScoreResult:
    """Scores for one image's candidates.

    ``scores``: (N,) float, higher is better, aligned with ``CandidateSet.boxes``.
    ``elements``: (N, 10) float element scores in the order of
    :data:`clipcrop_plugin.elements.ELEMENT_NAMES`, or ``None`` for a scorer that cannot explain.
    """

    scores: np.ndarray
    elements: np.ndarray | None = None


@runtime_checkable
class Scorer(Protocol):
    """Scores a batch of images with their candidates.

    Attributes: ``name`` (registry name), ``weights_hash`` (sha256 of the weights used, or
    ``None`` for a weights-free scorer), ``device`` (``"cpu"``, ``"cuda"``, ...).
    """

    name: str
    weights_hash: str | None
    device: str

    def score(self, images: Sequence[LoadedImage], candidates: Sequence[CandidateSet]) -> list[ScoreResult]:
        """Score every candidate of every image; one :class:`ScoreResult` per image."""
        ...
