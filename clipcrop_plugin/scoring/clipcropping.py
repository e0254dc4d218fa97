"""``clipcropping``: the trained CLIPCropping network (paper section 3) from one of our checkpoints.

Scores come from F_fusion + F_MLP; the ten element scores of every candidate come from CKE/AKE
(eq. 24) on the same trunk pass, against text embeddings cached in the checkpoint, so the text
encoder never runs at inference.
"""

from __future__ import annotations

from collections.abc import Sequence

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
    def create(cls, settings: Settings, device: str = "auto", weights: str | None = None) -> CLIPCroppingScorer:
        """Load ``weights`` / ``settings.weights`` (must be our checkpoint) or the model folder's active one."""
        from ..model.checkpoints import active_checkpoint, is_checkpoint, load_checkpoint

        explicit = weights or settings.weights or None
        if explicit:
            if not is_checkpoint(explicit):
                raise WeightsError(f"{explicit} is not a clipcrop checkpoint (the clipcropping scorer needs a trained "
                                   "checkpoint: NAME.safetensors with its NAME.json sidecar)")
            path = explicit
        else:
            model_dir = settings.resolved_model_dir()
            active = active_checkpoint(model_dir)
            if active is None:
                raise WeightsError(f"no trained clipcropping checkpoint in {model_dir}; "
                                   "import one with `clipcrop models import FILE` or train one with clipcrop-train")
            path = str(active.path)
        from ..model.device import pick_device  # torch only once a checkpoint is known to exist

        dev = pick_device(device or settings.device)
        model, info = load_checkpoint(path, "cpu", text_tower=False)
        return cls(model, info, dev)

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
