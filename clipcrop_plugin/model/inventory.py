"""What weights each scorer has and where they would come from (``clipcrop models``)."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..errors import WeightsError
from .checkpoints import active_checkpoint, checkpoint_dir, is_checkpoint, list_checkpoints
from .weights import find_clip_weights, model_dir_candidates


def scorer_inventory(settings: Settings) -> list[dict[str, Any]]:
    """One row per registered scorer: ``name``, ``ready`` (bool), ``weights`` (path or None), ``detail``."""
    try:
        from ..scoring.registry import scorer_names

        names = scorer_names()
    except ImportError:  # the registry is optional for this listing
        names = ["heuristic"]
    for builtin in ("clipcropping", "zeroshot"):
        if builtin not in names:
            names.append(builtin)
    model_dir = settings.resolved_model_dir()
    rows: list[dict[str, Any]] = []
    for name in sorted(names):
        row: dict[str, Any] = {"name": name, "ready": True, "weights": None, "sha256": None, "detail": ""}
        if name == "heuristic":
            row["detail"] = "no weights needed"
        elif name == "clipcropping":
            explicit = settings.weights or None
            try:
                info = active_checkpoint(model_dir) if not explicit else None
            except WeightsError as exc:
                info, row["detail"] = None, str(exc)
            if explicit:
                ok = is_checkpoint(explicit)
                row.update(weights=explicit, ready=ok,
                           detail="settings.weights" if ok else "settings.weights is not a clipcrop checkpoint")
            elif info is not None:
                row.update(weights=str(info.path), sha256=info.sha256, detail="active checkpoint")
            else:
                row.update(ready=False, detail=row["detail"] or f"no checkpoint in {checkpoint_dir(model_dir)} "
                           "(clipcrop models import FILE)")
        elif name == "zeroshot":
            try:
                where = find_clip_weights(model_dir, settings.clip_model, settings.clip_pretrained, settings.weights or None)
                row.update(weights=str(where.path), detail=f"{settings.clip_model} {settings.clip_pretrained} from {where.source}")
            except WeightsError:
                looked = ", ".join(p.name for p in model_dir_candidates(model_dir, settings.clip_model, settings.clip_pretrained)[:3])
                row.update(ready=False, detail=f"no {settings.clip_model} weights: looked in {model_dir} ({looked}, ...) "
                           "and the open_clip cache")
        else:
            row["detail"] = "from a plugin"
        rows.append(row)
    return rows


def checkpoint_rows(settings: Settings) -> list[dict[str, Any]]:
    """The checkpoints in the model folder, newest first, the active one marked."""
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
