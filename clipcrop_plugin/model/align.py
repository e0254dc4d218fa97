"""RoIAlign and RoDAlign (GAIC, Zeng et al.) on a trunk feature map, plus RoIAlign as a matrix.

Conventions: boxes are ``(x1, y1, x2, y2)`` float tensors in *input-tensor pixels* (the image
the trunk saw), ``x2``/``y2`` exclusive, i.e. the continuous interval ``[x1, x2)``. The trunk
has stride ``stride`` (32 for the ResNet towers), so feature cell ``j`` covers input pixels
``[32j, 32j+32)`` and its centre is ``32j + 16``: that is torchvision's ``aligned=True``
convention with ``spatial_scale = 1/stride``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align as tv_roi_align

__all__ = ["roi_align", "roi_align_separable", "rod_align", "rod_parts", "sampling_matrix", "axis_weights"]


def _as_rois(boxes: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """List of (Ni, 4) boxes per image -> (sum Ni, 5) rows ``[batch_index, x1, y1, x2, y2]``."""
    rows = []
    for index, b in enumerate(boxes):
        b = b.to(device=like.device, dtype=like.dtype).reshape(-1, 4)
        rows.append(torch.cat([torch.full((b.shape[0], 1), float(index), device=like.device, dtype=like.dtype), b], 1))
    return torch.cat(rows, 0) if rows else like.new_zeros((0, 5))


def roi_align(feature_map: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, stride: int,
              sampling_ratio: int = 2) -> torch.Tensor:
    """torchvision RoIAlign of every box of every image: (B, C, H, W) -> (sum Ni, C, size, size)."""
    rois = _as_rois(boxes, feature_map)
    return tv_roi_align(feature_map, rois, output_size=size, spatial_scale=1.0 / stride,
                        sampling_ratio=sampling_ratio, aligned=True)


def axis_weights(coords: torch.Tensor, length: int) -> torch.Tensor:
    """Bilinear weights of sample positions along one axis, exactly as torchvision's RoIAlign.

    ``coords`` (...,) in feature-cell units (cell centres at integers); returns (..., length)
    with at most two non-zero weights per position. Samples beyond one cell outside the map are
    zero; those just outside are clamped to the border, like torchvision.
    """
    valid = (coords >= -1.0) & (coords <= float(length))
    c = coords.clamp(min=0.0)
    low = c.floor().long()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    c = torch.where(at_end, low.to(c.dtype), c)
    frac = c - low.to(c.dtype)
    out = torch.zeros(*coords.shape, length, dtype=coords.dtype, device=coords.device)
    out.scatter_add_(-1, low.unsqueeze(-1), (1.0 - frac).unsqueeze(-1))
    out.scatter_add_(-1, high.unsqueeze(-1), frac.unsqueeze(-1))
    return out * valid.unsqueeze(-1).to(out.dtype)


def roi_align_separable(feature_map: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, stride: int,
                        sampling_ratio: int = 2) -> torch.Tensor:
    """:func:`roi_align` computed as two small bilinear operators per box (no sampling kernel).

    Bilinear RoIAlign is separable: a (size, H) row operator and a (size, W) column operator per
    box, the same ones :func:`sampling_matrix` multiplies out. On a small trunk map (7x7 at 224)
    this is a fraction of torchvision's per-sample CPU kernel. Equal to it up to float rounding.
    """
    _, c, h, w = feature_map.shape
    scale = 1.0 / stride
    out = []
    for index, b in enumerate(boxes):
        b = b.to(device=feature_map.device, dtype=torch.float32).reshape(-1, 4)
        if not len(b):
            continue
        x1, y1, x2, y2 = (b[:, i] * scale - 0.5 for i in range(4))
        ay = _bin_axis(y1, y2, size, sampling_ratio, h).to(feature_map.dtype)  # (N, size, H)
        ax = _bin_axis(x1, x2, size, sampling_ratio, w).to(feature_map.dtype)  # (N, size, W)
        rows = torch.einsum("nph,chw->ncpw", ay, feature_map[index])  # (N, C, size, W)
        out.append(torch.einsum("ncpw,nqw->ncpq", rows, ax))
    return torch.cat(out) if out else feature_map.new_zeros((0, c, size, size))


def _bin_axis(start: torch.Tensor, end: torch.Tensor, size: int, sampling_ratio: int, length: int) -> torch.Tensor:
    """(N,) RoI extents in feature units -> (N, size, length) averaged bilinear weights per bin."""
    n = start.shape[0]
    bin_size = (end - start) / size
    bins = torch.arange(size, dtype=start.dtype, device=start.device)
    sub = (torch.arange(sampling_ratio, dtype=start.dtype, device=start.device) + 0.5) / sampling_ratio
    pos = start.view(n, 1, 1) + (bins.view(1, size, 1) + sub.view(1, 1, -1)) * bin_size.view(n, 1, 1)
    return axis_weights(pos, length).mean(dim=2)


def sampling_matrix(boxes: torch.Tensor, height: int, width: int, size: int, stride: int,
                    sampling_ratio: int = 1) -> torch.Tensor:
    """RoIAlign as a linear map: (N, 4) boxes -> (N, size*size, height*width).

    ``sampling_matrix(b) @ X.flatten(1).T`` equals ``roi_align(X, [b], size, stride,
    sampling_ratio)`` (aligned=True). Bilinear sampling is separable, so the matrix is the outer
    product of a row and a column operator; keeping it as a matrix lets linear layers that
    follow RoIAlign (attention-pool projections) run once on the whole map instead of per crop.
    """
    boxes = boxes.reshape(-1, 4)
    scale = 1.0 / stride
    x1, y1, x2, y2 = (boxes[:, i] * scale - 0.5 for i in range(4))
    ay = _bin_axis(y1, y2, size, sampling_ratio, height)  # (N, size, H)
    ax = _bin_axis(x1, x2, size, sampling_ratio, width)  # (N, size, W)
    n = boxes.shape[0]
    return torch.einsum("nph,nqw->npqhw", ay, ax).reshape(n, size * size, height * width)


def rod_align(feature_map: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, stride: int,
              input_sizes: Sequence[tuple[int, int]] | None = None) -> torch.Tensor:
    """RoDAlign (GAIC): the whole map on a fixed (size+1)^2 grid, crop zeroed, 2x2/1 avg-pool.

    The grid spans the whole input image, edge to edge: ``x_k = k * W_in / size`` for
    ``k = 0..size`` (likewise y), sampled bilinearly (torchvision's border rules). Points with
    ``x1 <= x_k <= x2`` and ``y1 <= y_k <= y2`` lie in the crop and are set to zero. The grid
    samples do not depend on the box, so they are taken once per image (one einsum for the
    whole batch) and only the mask is per crop. ``input_sizes`` gives (width, height) of each image's valid input area; by
    default the whole map (``W * stride``, ``H * stride``).
    Returns (sum Ni, C, size, size).
    """
    parts = rod_parts(feature_map, boxes, size, stride, input_sizes)
    if parts is None:
        return feature_map.new_zeros((0, feature_map.shape[1], size, size))
    samples, owner, keep = parts
    masked = samples[owner] * keep.unsqueeze(1).to(samples.dtype)  # (sum Ni, C, size+1, size+1)
    return F.avg_pool2d(masked, kernel_size=2, stride=1)


def rod_parts(feature_map: torch.Tensor, boxes: Sequence[torch.Tensor], size: int, stride: int,
              input_sizes: Sequence[tuple[int, int]] | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """RoDAlign before its mask and pooling: (samples (B', C, s+1, s+1), owner (sum Ni,), keep (sum Ni, s+1, s+1)).

    ``rod_align == avg_pool2d(samples[owner] * keep, 2, 1)``. A linear layer that follows RoDAlign
    can be pushed through the pooling and onto the per-image samples, so per crop only the
    (s+1)^2 mask remains (see ``CLIPCropping.score_crops``). None when there are no boxes.
    """
    b, c, h, w = feature_map.shape
    per_image = [bx.to(device=feature_map.device, dtype=torch.float32).reshape(-1, 4) for bx in boxes]
    if not per_image or sum(len(bx) for bx in per_image) == 0:
        return None
    # Coordinates and weights in float32 even under fp16 autocast: pixel positions need the bits.
    grid = torch.arange(size + 1, dtype=torch.float32, device=feature_map.device) / size
    sizes = torch.tensor(input_sizes if input_sizes is not None else [(w * stride, h * stride)] * len(per_image),
                         dtype=torch.float32, device=feature_map.device)  # (B', 2): width, height
    xs, ys = grid.view(1, -1) * sizes[:, :1], grid.view(1, -1) * sizes[:, 1:]  # (B', size+1)
    wy = axis_weights(ys / stride - 0.5, h).to(feature_map.dtype)  # (B', size+1, H)
    wx = axis_weights(xs / stride - 0.5, w).to(feature_map.dtype)  # (B', size+1, W)
    # The grid samples do not depend on the box: one einsum for the whole batch.
    samples = torch.einsum("bph,bchw,bqw->bcpq", wy, feature_map[: len(per_image)], wx)  # (B', C, s+1, s+1)
    owner = torch.repeat_interleave(torch.arange(len(per_image), device=feature_map.device),
                                    torch.tensor([len(bx) for bx in per_image], device=feature_map.device))
    bx = torch.cat(per_image)  # (sum Ni, 4)
    ys_n, xs_n = ys[owner], xs[owner]  # (sum Ni, size+1)
    inside_y = (ys_n >= bx[:, 1:2]) & (ys_n <= bx[:, 3:4])
    inside_x = (xs_n >= bx[:, 0:1]) & (xs_n <= bx[:, 2:3])
    keep = ~(inside_y.unsqueeze(2) & inside_x.unsqueeze(1))  # (sum Ni, size+1, size+1)
    return samples, owner, keep
