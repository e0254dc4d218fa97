"""The ten composition and aesthetic elements that explain a crop (paper sections 3.1-3.2).

They are data: every scorer reports scores for exactly these elements, in this order, so the
database, the explanations and the prompt learners all agree on what index ``i`` means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Element:
    """One explainable element: its stable ``name``, its branch, a label and its CLIP prompts."""

    name: str
    branch: str  # "composition" (CKE) or "aesthetic" (AKE)
    label: str  # short human phrase used in explanations
    prompts: tuple[str, ...]


ELEMENTS: tuple[Element, ...] = (
    Element("center", "composition", "center composition",
            ("a photo with center composition", "the subject is placed in the center of the photo")),
    Element("rule_of_thirds", "composition", "rule of thirds",
            ("a photo following the rule of thirds", "the subject sits on a third line of the photo")),
    Element("horizontal", "composition", "horizontal composition",
            ("a photo with horizontal composition", "a photo with a strong horizontal line")),
    Element("vertical", "composition", "vertical composition",
            ("a photo with vertical composition", "a photo with strong vertical lines")),
    Element("curved", "composition", "curved composition",
            ("a photo with curved composition", "a photo with leading curves")),
    Element("color", "aesthetic", "color",
            ("a photo with vibrant color harmony", "a photo with beautiful colors")),
    Element("lighting", "aesthetic", "lighting",
            ("a photo with good lighting", "a well exposed photo with beautiful light")),
    Element("depth_of_field", "aesthetic", "depth of field",
            ("a photo with shallow depth of field", "a photo with a sharp subject and a blurred background")),
    Element("object_emphasis", "aesthetic", "object emphasis",
            ("a photo with a well emphasized object", "a photo where the main subject stands out")),
    Element("interesting_content", "aesthetic", "interesting content",
            ("a photo with interesting content", "an engaging photo that tells a story")),
)

ELEMENT_NAMES: tuple[str, ...] = tuple(e.name for e in ELEMENTS)
COMPOSITION_ELEMENTS: tuple[Element, ...] = tuple(e for e in ELEMENTS if e.branch == "composition")
AESTHETIC_ELEMENTS: tuple[Element, ...] = tuple(e for e in ELEMENTS if e.branch == "aesthetic")
BY_NAME: dict[str, Element] = {e.name: e for e in ELEMENTS}


def element(name: str) -> Element:
    """Return the element called ``name`` (accepts spaces or hyphens for underscores)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return BY_NAME[key]
    except KeyError:
        raise KeyError(f"unknown element {name!r}; known: {', '.join(ELEMENT_NAMES)}") from None


# --- explanations -------------------------------------------------------------------------------
# Here rather than in the pipeline so the store can explain any stored candidate the same way.

EXPLANATION_SIZE = 3
# An element change is worth naming when it is at least this many spreads of that element's
# scores over the photo's candidates (the crop's strongest change is always named). Relative,
# because scorers' element scales differ by orders of magnitude.
MIN_RELATIVE_CHANGE = 0.25


def explain_changes(changes: np.ndarray, elements: np.ndarray, full_index: int) -> list[list[int]]:
    """Per candidate, the indices of the elements its explanation names, strongest first.

    Each change is measured in spreads (standard deviation) of that element's score over the
    photo's candidates, so the choice does not depend on the scorer's scale: the top
    :data:`EXPLANATION_SIZE` by relative size, those below :data:`MIN_RELATIVE_CHANGE` dropped
    except the strongest. Only a crop whose elements equal the full frame's (the full frame
    itself, or a candidate with the same box) names nothing.
    """
    return [[k for k in row if k >= 0] for row in explain_picks(changes, elements, full_index).tolist()]


def explain_picks(changes: np.ndarray, elements: np.ndarray, full_index: int) -> np.ndarray:
    """:func:`explain_changes` as one (N, :data:`EXPLANATION_SIZE`) int array: the element
    indices of each candidate's explanation, strongest first, ``-1`` where fewer are named.

    The array form is what a suggestion keeps (no per-candidate lists to build or pickle).
    """
    unit = np.std(np.delete(elements, full_index, axis=0), axis=0) if len(elements) > 1 else np.ones(elements.shape[1])
    scale = np.maximum(np.abs(elements).max(axis=0) if len(elements) else 1.0, 1e-300)
    # A flat element (same score on every candidate) gets a tiny unit so any change it does show
    # still counts, but never outranks an element that genuinely varies.
    unit = np.where(unit > 1e-9 * scale, unit, np.inf)
    rel = np.abs(changes) / unit
    exact = np.abs(changes) <= 1e-12 * np.maximum(scale, 1.0)
    rel = np.where(exact, 0.0, rel)
    order = np.argsort(-rel, axis=1, kind="stable")[:, :EXPLANATION_SIZE]
    top = np.take_along_axis(rel, order, axis=1)
    named = top >= MIN_RELATIVE_CHANGE
    named[:, 0] |= top[:, 0] > 0
    picks = np.where(named, order, -1)
    # Only flat elements changed (infinite unit): name the largest raw change.
    lost = ~named.any(axis=1) & ~exact.all(axis=1)
    if lost.any():
        rows = np.flatnonzero(lost)
        picks[rows, 0] = np.argmax(np.where(exact[rows], -1.0, np.abs(changes[rows])), axis=1)
    if len(picks):
        picks[full_index] = -1
    return picks
