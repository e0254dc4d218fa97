"""Glue between the scorer interface (LoadedImage + CandidateSet) and the network's tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..candidates import CandidateSet
from ..imaging import LoadedImage
from .config import ModelConfig
from .network import image_tensor, input_size


@dataclass
class Group:
    """Images of a batch that share one trunk input size, so they share one forward pass."""

    indices: list[int]
    images: torch.Tensor  # (B, 3, H, W)
    boxes: list[torch.Tensor]  # per image (Ni, 4) float, input-tensor pixels


def group_inputs(images: Sequence[LoadedImage], candidates: Sequence[CandidateSet], config: ModelConfig,
                 device: torch.device) -> list[Group]:
    """Resize/normalize each working image and map its full-resolution boxes to input pixels.

    Boxes are scaled per axis by (input size / full-resolution size): in square mode the photo
    is squeezed to the square input exactly as the paper does, so the boxes are squeezed too.
    """
    if len(images) != len(candidates):
        raise ValueError(f"{len(images)} images but {len(candidates)} candidate sets")
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        by_size.setdefault(input_size(im.image.width, im.image.height, config), []).append(i)
    groups = []
    for size, idx in by_size.items():
        tensors, boxes = [], []
        for i in idx:
            tensors.append(image_tensor(images[i].image, size, config))
            cand = candidates[i]
            sx, sy = size[0] / cand.width, size[1] / cand.height
            b = torch.as_tensor(np.asarray(cand.boxes, dtype=np.float64).reshape(-1, 4), dtype=torch.float32)
            boxes.append((b * torch.tensor([sx, sy, sx, sy])).to(device))
        groups.append(Group(idx, torch.stack(tensors).to(device), boxes))
    return groups
