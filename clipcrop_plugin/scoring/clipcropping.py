"""``clipcropping``: the trained CLIPCropping network (paper section 3) from one of our checkpoints.

Scores come from F_fusion + F_MLP; the ten element scores of every candidate come from CKE/AKE
(eq. 24) on the same trunk pass, against text embeddings cached in the checkpoint, so the text
encoder never runs at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..candidates import CandidateSet
from ..config import Settings
from ..errors import WeightsError
from ..imaging import LoadedImage
from .base import ScoreResult


class CLIPCroppingScorer:
    """Trained-checkpoint scorer. Build with :meth:`create`."""

    name = "clipcropping"

    def __init__(self, model, info, device) -> None:  # noqa: ANN001 - torch types
        if not bool(model.text_ready):
            model.refresh_text_cache()
        if model.clip.transformer is not None:
            model.drop_text_tower()
        import gc

        gc.collect()  # hand the text tower's memory back before scoring starts
        self.model = model.to(device).eval()
        self.info = info
        self.torch_device = device
        self.device = device.type
        self.weights_hash = info.sha256
        self.weights_source = str(info.path)
        self.min_side = model.config.image_size

    @classmethod
    def locate(cls, settings: Settings, weights: str | None = None):  # noqa: ANN206 - CheckpointInfo
        """The checkpoint this scorer would load (explicit path or the pinned one), verified fit to score.

        Raises WeightsError when there is none and UnfitCheckpoint when it may not score photos.
        No tensor is read.
        """
        from ..model.checkpoints import (
            UnfitCheckpoint,
            active_checkpoint,
            is_checkpoint,
            read_checkpoint_info,
            scoring_refusal,
        )

        explicit = weights or settings.weights or None
        if explicit:
            if not is_checkpoint(explicit):
                raise WeightsError(f"{explicit} is not a clipcrop checkpoint (the clipcropping scorer needs a trained "
                                   "checkpoint: NAME.safetensors with its NAME.json sidecar)")
            info = read_checkpoint_info(explicit)
        else:
            model_dir = settings.resolved_model_dir()
            info = active_checkpoint(model_dir)
            if info is None:
                from ..model.checkpoints import list_checkpoints

                there = [i.name for i in list_checkpoints(model_dir) if i.can_score]
                hint = (f"pick one with `clipcrop models use NAME` ({', '.join(there[:3])})" if there else
                        "import one with `clipcrop models import FILE` or train one with clipcrop-train")
                raise WeightsError(f"no trained clipcropping checkpoint is active in {model_dir}; {hint}")
        why = scoring_refusal(info)
        if why:
            raise UnfitCheckpoint(f"checkpoint {info.name} cannot score photos: {why}")
        return info

    @classmethod
    def create(cls, settings: Settings, device: str = "auto", weights: str | None = None) -> CLIPCroppingScorer:
        """Load ``weights`` / ``settings.weights`` (must be our checkpoint) or the model folder's active one."""
        from ..model.checkpoints import load_checkpoint

        info = cls.locate(settings, weights)
        from ..model.device import pick_device  # torch only once a checkpoint is known to exist

        dev = pick_device(device or settings.device)
        model, info = load_checkpoint(info.path, "cpu", text_tower=False)
        return cls(model, info, dev)

    @classmethod
    def inventory(cls, settings: Settings) -> dict[str, Any]:
        """``clipcrop models`` row: the checkpoint this scorer would use, or why there is none."""
        try:
            info = cls.locate(settings)
        except WeightsError as exc:
            return {"ready": False, "weights": settings.weights or None, "sha256": None, "detail": str(exc)}
        source = "settings.weights" if settings.weights else "active checkpoint"
        return {"ready": True, "weights": str(info.path), "sha256": info.sha256,
                "detail": f"{source}, lineage {' -> '.join(info.lineage)}"}

    def score(self, images: Sequence[LoadedImage], candidates: Sequence[CandidateSet]) -> list[ScoreResult]:
        """Head scores and eq. 24 element scores for every candidate; one trunk pass per image."""
        import torch

        from ..model.device import autocast_for
        from ..model.inference import group_inputs

        results: list[ScoreResult | None] = [None] * len(images)
        with torch.no_grad(), autocast_for(self.torch_device):
            for group in group_inputs(images, candidates, self.model.config, self.torch_device):
                fmap = self.model.features(group.images)
                scores = self.model.score_crops(fmap, group.boxes)
                elements = self.model.element_scores(fmap, group.boxes)
                for j, i in enumerate(group.indices):
                    results[i] = ScoreResult(scores=scores[j].float().cpu().numpy().astype(np.float64),
                                             elements=elements[j].float().cpu().numpy().astype(np.float64))
        return [r for r in results if r is not None]
