"""The ten composition and aesthetic elements that explain a crop (paper sections 3.1-3.2).

They are data: every scorer reports scores for exactly these elements, in this order, so the
database, the explanations and the prompt learners all agree on what index ``i`` means.
"""

from __future__ import annotations

from dataclasses import dataclass


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
