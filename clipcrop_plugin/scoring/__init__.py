"""Scorers: turn an image and its candidate boxes into scores and element explanations."""

from .base import Scorer, ScoreResult

__all__ = ["Scorer", "ScoreResult"]
