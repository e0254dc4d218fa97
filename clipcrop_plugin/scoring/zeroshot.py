"""``zeroshot``: pretrained CLIP only, no trained head.

Every candidate goes through ONE trunk pass per image: the crop is RoIAligned to CLIP's own
attention-pool grid (projection trick in :func:`clipcrop_plugin.model.knowledge.roi_attention_pool`),
giving its CLIP image embedding. Score = mean cosine to the good-composition prompts minus mean
cosine to the bad ones (:mod:`clipcrop_plugin.model.prompts`); elements = cosine to each of
the ten element prompt groups; both times CLIP's logit scale. Text embeddings are computed once at ``create()``, after which the
text tower is freed.

``zeroshot_rescore = N`` (a setting, default 0): the one pass sees every crop through the photo
squeezed to CLIP's square input, so a crop's embedding mixes in its neighbourhood and a wide crop
is seen squeezed. With N > 0 the N best crops of that pass are cut from the working image, resized
at their true aspect (short side the tower's input size), embedded by their own trunk pass, and
reordered among themselves by the new score; they keep the one-pass score values (so scores stay
on one scale and the rest of the ranking is unchanged) and take the new element scores. It costs
N extra trunk passes per photo: for a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    def __init__(self, clip, config, device, weights_hash: str, source: str, rescore: int = 0) -> None:  # noqa: ANN001
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
        self.rescore = max(0, int(rescore))
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
        from ..model.config import pretrained_model_config
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
            return cls(model.clip, model.config, dev, info.sha256, str(info.path),
                       settings.zeroshot_rescore)._personalized(settings)
        config = pretrained_model_config(settings.clip_model, settings.clip_pretrained)
        clip = create_clip(config, empty=True)
        copy_state_into(clip, where.path, what="CLIP weights")
        return cls(clip, config, dev, sha256_file(where.path), str(Path(where.path)),
                   settings.zeroshot_rescore)._personalized(settings)

    def _personalized(self, settings: Settings) -> ZeroShotScorer:
        """Load the model folder's active personalization (clipcrop-train personalize), if any."""
        import logging

        from .learned import load_active, zeroshot_input_names

        self.personal = load_active("zeroshot", settings, self.base_weights_hash)
        if self.personal is not None and self.personal.names != zeroshot_input_names(int(self.quality.shape[1])):
            # Written by an older clipcrop (other inputs per crop): scoring goes on as shipped.
            logging.getLogger("clipcrop").warning(
                "ignoring zeroshot personalization %s: it was trained on other inputs per crop; "
                "personalize again (clipcrop-train personalize --scorer zeroshot)", self.personal.name)
            self.personal = None
        if self.personal is not None:
            self.weights_hash = self.personal.weights_hash
        return self

    def _personal_scores(self, emb, image: LoadedImage, cand: CandidateSet, scores: np.ndarray,  # noqa: ANN001
                         indices: np.ndarray | None = None) -> np.ndarray:
        """``scores`` plus the active personalization's head on these crops (all of ``cand``, or
        the candidates ``indices`` of it, whose embeddings ``emb`` are)."""
        if self.personal is None:
            return scores
        from .learned import crop_features, zeroshot_inputs

        crop = crop_features(image, cand)
        if indices is not None:
            crop = crop[indices]
        return scores + self.personal.adjust(zeroshot_inputs(emb.float().cpu().numpy(), crop, scores))

    @classmethod
    def inventory(cls, settings: Settings) -> dict[str, Any]:
        """``clipcrop models`` row: ready only when the weights ``create`` would load fit the tower."""
        from ..model.checkpoints import is_checkpoint, read_checkpoint_info
        from ..model.weights import check_clip_weights, find_clip_weights

        name, tag = settings.clip_model, settings.clip_pretrained
        explicit = settings.weights or None
        try:
            if explicit and is_checkpoint(explicit):
                info = read_checkpoint_info(explicit)
                return {"ready": True, "weights": str(info.path), "sha256": info.sha256,
                        "detail": "CLIP towers of the checkpoint in settings.weights"}
            where = find_clip_weights(settings.resolved_model_dir(), name, tag, explicit)
            check_clip_weights(where.path, name, tag)
        except WeightsError as exc:
            return {"ready": False, "weights": explicit, "sha256": None, "detail": str(exc)}
        sha = None
        if where.source == "fetched":
            from ..model.fetch import read_records

            rec = read_records(settings.resolved_model_dir()).get(f"{name}-{tag}")
            sha = rec.sha256 if rec else None
        return {"ready": True, "weights": str(where.path), "sha256": sha, "detail": f"{name} {tag} from {where.source}"}

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
        for emb, im, cand in zip(self.embed_crops(images, candidates), images, candidates):
            res = self._result(emb)
            res.scores = self._personal_scores(emb, im, cand, res.scores)
            results.append(res)
        if self.rescore:
            for im, cand, res in zip(images, candidates, results):
                self._rescore(im, cand, res)
        return results

    def _result(self, emb) -> ScoreResult:  # noqa: ANN001 - torch tensor (N, D)
        # CLIP's own logit scale (100 for OpenAI's weights): cosines become CLIP logits, so
        # changes between crops are read on the scale CLIP was trained to separate things at.
        sims = self.scale * (emb @ self.quality.t())  # (N, 2): good, bad
        scores = (sims[:, 0] - sims[:, 1]).cpu().numpy().astype(np.float64)
        elements = (self.scale * (emb @ self.element_text.t())).cpu().numpy().astype(np.float64)
        return ScoreResult(scores=scores, elements=elements)

    def embed_own_pixels(self, image: LoadedImage, cand: CandidateSet, indices: Sequence[int]) -> list:
        """CLIP embeddings of the candidates ``indices`` from their own pixels at their true aspect."""
        import torch
        import torch.nn.functional as F

        from ..model.align import sampling_matrix
        from ..model.config import ModelConfig
        from ..model.device import autocast_for
        from ..model.knowledge import roi_attention_pool
        from ..model.network import STRIDE, image_tensor, input_size, trunk_features

        work = image.image
        sx, sy = work.width / cand.width, work.height / cand.height
        aspect_cfg = ModelConfig(**{**self.config.to_dict(), "input_mode": "aspect"})
        pool = self.clip.visual.attnpool
        out = []
        with torch.no_grad(), autocast_for(self.torch_device):
            for i in indices:
                x1, y1, x2, y2 = (float(v) for v in np.asarray(cand.boxes[i], dtype=np.float64))
                box = (int(round(x1 * sx)), int(round(y1 * sy)), max(int(round(x1 * sx)) + 1, int(round(x2 * sx))),
                       max(int(round(y1 * sy)) + 1, int(round(y2 * sy))))
                crop = work.crop(box)
                size = input_size(crop.width, crop.height, aspect_cfg)
                fmap = trunk_features(self.clip.visual, image_tensor(crop, size, self.config)[None].to(self.torch_device))
                _, _, h, w = fmap.shape
                full = torch.tensor([[0.0, 0.0, w * STRIDE, h * STRIDE]], device=fmap.device)
                s = sampling_matrix(full, h, w, self.pool_size, STRIDE, self.config.pool_sampling_ratio)
                out.append(F.normalize(roi_attention_pool(pool, fmap[0], s).float(), dim=-1)[0])
        return out

    def _rescore(self, image: LoadedImage, cand: CandidateSet, res: ScoreResult) -> None:
        """Reorder the top ``rescore`` crops by their own-pixel score (see the module docstring)."""
        import torch

        k = min(self.rescore, len(res.scores))
        if k < 2:
            return
        top = np.argsort(-res.scores, kind="stable")[:k]
        own = torch.stack(self.embed_own_pixels(image, cand, top.tolist()))
        fresh = self._result(own)
        fresh.scores = self._personal_scores(own, image, cand, fresh.scores, top)
        values = np.sort(res.scores[top])[::-1]  # the one-pass values, best first
        order = top[np.argsort(-fresh.scores, kind="stable")]
        res.scores[order] = values
        assert res.elements is not None and fresh.elements is not None
        res.elements[top] = fresh.elements
