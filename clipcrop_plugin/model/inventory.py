"""The model folder's checkpoints for ``clipcrop models`` (scorer rows come from the scorers
themselves, through :func:`clipcrop_plugin.scoring.registry.scorer_inventory`)."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import WeightsError
from .checkpoints import active_checkpoint, lineages, list_checkpoints


def checkpoint_rows(settings: Settings) -> list[dict[str, Any]]:
    """The checkpoints in the model folder, newest first, the active one marked, each with its lineage."""
    model_dir = settings.resolved_model_dir()
    try:
        active = active_checkpoint(model_dir)
    except WeightsError:
        active = None
    rows = []
    for info in list_checkpoints(model_dir):
        row = info.to_dict()
        row["active"] = active is not None and active.path == info.path
        rows.append(row)
    return rows


def lineage_rows(settings: Settings) -> list[list[str]]:
    """Each parent -> child chain of the model folder as checkpoint names, oldest first."""
    return [[i.name for i in chain] for chain in lineages(settings.resolved_model_dir())]
