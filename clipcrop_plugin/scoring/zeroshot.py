"""``zeroshot``: pretrained CLIP only, no trained head.

Every candidate goes through ONE trunk pass per image: the crop is RoIAligned to CLIP's own
attention-pool grid (projection trick in :func:`clipcrop_plugin.model.knowledge.roi_attention_pool`),
giving its CLIP image embedding. Score = mean cosine to the good-composition prompts minus mean
cosine to the bad ones (:mod:`clipcrop_plugin.model.prompts`); elements = cosine to each of
the ten element prompt groups; both times CLIP's logit scale. Text embeddings are computed once at ``create()``, after which the
text tower is freed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..candidates import CandidateSet
from ..config import Settings
from ..elements import ELEMENTS
from ..errors import WeightsError
from ..imaging import LoadedImage
from .base import ScoreResult


class ZeroShotScorer:
    """CLIP zero-shot crop scorer (see module docstring). Build with :meth:`create`."""

    name = "zeroshot"

    def __init__(self, clip, config, device, weights_hash: str, source: str) -> None:  # noqa: ANN001 - torch types
        import torch

        from ..model.knowledge import encode_texts
        from ..model.network import drop_text_modules
        from ..model.prompts import BAD_PROMPTS, GOOD_PROMPTS

        self.clip = clip.to(device).eval()
        self.config = config
        self.torch_device = device
        self.device = device.type
        self.weights_hash = weights_hash
        self.weights_source = source
        self.base_weights_hash = weights_hash
        self.personal = None  # a learned head on the crop embeddings, see _personalized
        self.min_side = config.image_size
        self.scale = float(self.clip.logit_scale.detach().exp().clamp(max=100.0))
        with torch.no_grad():
            self.quality = encode_texts(self.clip, [GOOD_PROMPTS, BAD_PROMPTS]).to(device)
            self.element_text = encode_texts(self.clip, [e.prompts for e in ELEMENTS]).to(device)
        drop_text_modules(self.clip)  # inference never needs the text tower again
        import gc

        gc.collect()  # hand the text tower's memory back before scoring starts
        pool = self.clip.visual.attnpool
        self.pool_size = int(round((pool.positional_embedding.shape[0] - 1) ** 0.5))

    @classmethod
    def create(cls, settings: Settings, device: str = "auto", weights: str | None = None) -> ZeroShotScorer:
        """Load pretrained CLIP (explicit path, model folder, open_clip cache) or raise WeightsError.

        ``weights`` may also be one of our checkpoints: its CLIP towers are used.
        """
        # Weights are looked for before torch is imported, so that `auto` falls back to the
        # heuristic scorer quickly when there are none.
        from ..model.checkpoints import is_checkpoint
        from ..model.config import ModelConfig
        from ..model.weights import find_clip_weights

        explicit = weights or settings.weights or None
        is_ours = bool(explicit) and is_checkpoint(explicit)
        if not is_ours:
            where = find_clip_weights(settings.resolved_model_dir(), settings.clip_model, settings.clip_pretrained,
                                      explicit)

        from ..model.checkpoints import load_checkpoint
        from ..model.device import pick_device
        from ..model.network import create_clip
        from ..model.weights import copy_state_into, sha256_file

        dev = pick_device(device or settings.device)
        if is_ours:
            model, info = load_checkpoint(explicit, "cpu")
            return cls(model.clip, model.config, dev, info.sha256, str(info.path))._personalized(settings)
        config = ModelConfig(clip_model=settings.clip_model, clip_pretrained=settings.clip_pretrained)
        vision = config.open_clip_config().get("vision_cfg", {})
        size = int(vision.get("image_size", config.image_size))
        if isinstance(vision.get("image_size"), (list, tuple)):
            raise WeightsError(f"{settings.clip_model} has a non-square input; zeroshot needs a square ResNet tower")
        import open_clip

        # Activation and normalisation follow the pretrained weights (OpenAI's use QuickGELU).
        pcfg = open_clip.get_pretrained_cfg(settings.clip_model, settings.clip_pretrained) or {}
        extra = {k: tuple(pcfg[k]) for k in ("mean", "std") if pcfg.get(k)}
        config = ModelConfig(clip_model=settings.clip_model, clip_pretrained=settings.clip_pretrained, image_size=size,
                             quick_gelu=bool(pcfg.get("quick_gelu", settings.clip_pretrained == "openai")), **extra)
        clip = create_clip(config, empty=True)
        copy_state_into(clip, where.path, what="CLIP weights")
        return cls(clip, config, dev, sha256_file(where.path), str(Path(where.path)))._personalized(settings)

    def _personalized(self, settings: Settings) -> ZeroShotScorer:
        """Load the model folder's active personalization (clipcrop-train personalize), if any."""
        from .learned import load_active

        self.personal = load_active("zeroshot", settings, self.base_weights_hash)
        if self.personal is not None:
            self.weights_hash = self.personal.weights_hash
        return self

    def embed_crops(self, images: Sequence[LoadedImage], candidates: Sequence[CandidateSet]) -> list:
        """Normalized CLIP embeddings of every candidate, per image: list of (Ni, D) tensors."""
        import torch
        import torch.nn.functional as F

        from ..model.align import sampling_matrix
        from ..model.device import autocast_for
        from ..model.inference import group_inputs
        from ..model.knowledge import roi_attention_pool
        from ..model.network import STRIDE, trunk_features

        out: list = [None] * len(images)
        pool = self.clip.visual.attnpool
        with torch.no_grad(), autocast_for(self.torch_device):
            for group in group_inputs(images, candidates, self.config, self.torch_device):
                fmap = trunk_features(self.clip.visual, group.images)
                _, _, h, w = fmap.shape
                for j, i in enumerate(group.indices):
                    s = sampling_matrix(group.boxes[j], h, w, self.pool_size, STRIDE, self.config.pool_sampling_ratio)
                    out[i] = F.normalize(roi_attention_pool(pool, fmap[j], s).float(), dim=-1)
        return out

    def score(self, images: Sequence[LoadedImage], candidates: Sequence[CandidateSet]) -> list[ScoreResult]:
        """Quality-prompt margin and element cosines for every candidate of every image."""
        results = []
        for emb, cands in zip(self.embed_crops(images, candidates), candidates):
            # CLIP's own logit scale (100 for OpenAI's weights): cosines become CLIP logits, so
            # changes between crops are read on the scale CLIP was trained to separate things at.
            sims = self.scale * (emb @ self.quality.t())  # (N, 2): good, bad
            scores = (sims[:, 0] - sims[:, 1]).cpu().numpy().astype(np.float64)
            if self.personal is not None:
                from .learned import zeroshot_inputs

                scores = scores + self.personal.adjust(zeroshot_inputs(emb.cpu().numpy(), cands.boxes, cands.width,
                                                                       cands.height, scores))
            elements = (self.scale * (emb @ self.element_text.t())).cpu().numpy().astype(np.float64)
            results.append(ScoreResult(scores=scores, elements=elements))
        return results
