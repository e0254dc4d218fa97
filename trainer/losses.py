"""Losses of the three stages (SPEC 4) and of personalization (SPEC 12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

# GAIC's normalisation of MOS (croppingDataset.py).
MOS_MEAN = 2.95
MOS_STD = 0.8


def normalize_mos(mos: torch.Tensor) -> torch.Tensor:
    """z-normalise MOS the way GAIC does (fixed constants, not per-batch statistics)."""
    return (mos - MOS_MEAN) / MOS_STD


def element_logits(visual: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """Scaled cosine similarities (B, E) of visual (B, D) against text (E, D) or per-image text (B, E, D)."""
    v = F.normalize(visual.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    scale = logit_scale.exp() if isinstance(logit_scale, torch.Tensor) else float(logit_scale)
    if t.dim() == 2:
        return scale * v @ t.t()
    return scale * torch.einsum("bd,bed->be", v, t)


def info_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """InfoNCE (paper eq. 1 and 6) over the element prompts of one branch.

    ``logits`` (B, E) are scaled similarities; ``positives`` (B, E) bool. Every positive
    (image, element) pair contributes one term ``-log softmax(logits_b)[e]`` with all the branch's
    prompts in the denominator; images with no positive label contribute nothing.
    """
    positives = positives.bool()
    log_prob = F.log_softmax(logits.float(), dim=-1)
    count = positives.sum()
    if count == 0:
        # Keeps the graph (and DDP/AMP bookkeeping) intact when a batch has no positive label.
        return logits.sum() * 0.0
    return -(log_prob[positives]).sum() / count


def ranking_hinge(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pairwise ranking loss over the candidates of ONE image (GAIC's cropping_rank_loss).

    ``mean_{i<j} max(0, -sign(g_i - g_j) * ((p_i - p_j) - (g_i - g_j)))``: a pair is penalised only
    when the predicted gap undershoots the ground-truth gap in the ground truth's direction.
    """
    pred = pred.flatten().float()
    target = target.flatten().float()
    n = pred.numel()
    if n < 2:
        return pred.sum() * 0.0
    i, j = torch.triu_indices(n, n, offset=1, device=pred.device)
    dp = pred[i] - pred[j]
    dg = target[i] - target[j]
    return torch.relu(-torch.sign(dg) * (dp - dg)).mean()


def cropping_loss(pred: torch.Tensor, mos: torch.Tensor, rank_weight: float = 1.0) -> torch.Tensor:
    """Stage-3 loss for one image (eq. 14): SmoothL1 (delta 1) on z-normalised MOS + ranking hinge."""
    target = normalize_mos(mos.float())
    pred = pred.flatten().float()
    return F.smooth_l1_loss(pred, target, beta=1.0) + rank_weight * ranking_hinge(pred, target)


def preference_hinge(better: torch.Tensor, worse: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Personalization loss: the preferred crop should outscore the other by ``margin``."""
    return torch.relu(margin - (better.float() - worse.float())).mean()
