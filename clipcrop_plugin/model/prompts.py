"""Prompts the zero-shot scorer compares crops against (data, like the element prompts).

A crop's zero-shot score is its mean cosine similarity to ``GOOD_PROMPTS`` minus its mean
similarity to ``BAD_PROMPTS`` (CLIP image-text cosine, pretrained weights only).
"""

from __future__ import annotations

GOOD_PROMPTS: tuple[str, ...] = (
    "a well composed, beautiful photo",
    "a professionally framed photograph with a clear subject",
    "an aesthetically pleasing photo with balanced composition",
)

BAD_PROMPTS: tuple[str, ...] = (
    "a badly composed, poorly framed photo",
    "a photo with the subject cut off at the edge",
    "a cluttered snapshot with distracting borders",
)
