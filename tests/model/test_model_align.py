"""RoIAlign / RoDAlign conventions and the RoIAlign-as-matrix identity."""

from __future__ import annotations

import math

import pytest
import torch

from clipcrop_plugin.model.align import rod_align, roi_align, sampling_matrix


def _bilinear_ref(fmap: torch.Tensor, y: float, x: float) -> torch.Tensor:
    """torchvision's bilinear rule written out with scalars."""
    _, h, w = fmap.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return torch.zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(math.floor(y)), int(math.floor(x))
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * fmap[:, y0, x0] + (1 - ly) * lx * fmap[:, y0, x1]
            + ly * (1 - lx) * fmap[:, y1, x0] + ly * lx * fmap[:, y1, x1])


def _rod_ref(fmap: torch.Tensor, box: list[float], size: int, stride: int) -> torch.Tensor:
    """Slow RoDAlign: loop over the (size+1)^2 grid, zero points in the crop, 2x2 mean."""
    c, h, w = fmap.shape
    in_w, in_h = w * stride, h * stride
    grid = torch.zeros(c, size + 1, size + 1)
    for i in range(size + 1):
        for j in range(size + 1):
            y, x = i * in_h / size, j * in_w / size
            if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
                continue
            grid[:, i, j] = _bilinear_ref(fmap, y / stride - 0.5, x / stride - 0.5)
    out = torch.zeros(c, size, size)
    for i in range(size):
        for j in range(size):
            out[:, i, j] = grid[:, i:i + 2, j:j + 2].mean(dim=(1, 2))
    return out


def test_rod_align_matches_slow_reference() -> None:
    torch.manual_seed(1)
    fmap = torch.randn(2, 3, 7, 9)
    boxes = [torch.tensor([[0.0, 0.0, 288.0, 224.0], [40.0, 30.0, 200.0, 190.0]]),
             torch.tensor([[10.0, 100.0, 150.0, 224.0]])]
    out = rod_align(fmap, boxes, 9, 32)
    assert out.shape == (3, 3, 9, 9)
    refs = [_rod_ref(fmap[0], boxes[0][0].tolist(), 9, 32), _rod_ref(fmap[0], boxes[0][1].tolist(), 9, 32),
            _rod_ref(fmap[1], boxes[1][0].tolist(), 9, 32)]
    for got, ref in zip(out, refs):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    # the full frame leaves nothing outside the crop
    assert out[0].abs().max() == 0


def test_rod_align_differs_only_by_mask() -> None:
    fmap = torch.ones(1, 1, 7, 7)
    small = rod_align(fmap, [torch.tensor([[96.0, 96.0, 128.0, 128.0]])], 9, 32)[0, 0]
    big = rod_align(fmap, [torch.tensor([[32.0, 32.0, 192.0, 192.0]])], 9, 32)[0, 0]
    assert small.sum() > big.sum() > 0


def test_roi_align_box_convention_one_cell() -> None:
    """A box covering exactly input pixels [32j, 32j+32) x [32i, 32i+32) reads cell (i, j)."""
    fmap = torch.arange(2 * 5 * 6, dtype=torch.float32).view(1, 2, 5, 6)
    for i, j in [(0, 0), (1, 2), (4, 5)]:
        box = torch.tensor([[32.0 * j, 32.0 * i, 32.0 * j + 32, 32.0 * i + 32]])
        got = roi_align(fmap, [box], 1, 32, sampling_ratio=1)[0, :, 0, 0]
        torch.testing.assert_close(got, fmap[0, :, i, j])


def test_roi_align_full_box_is_identity_at_sampling_one() -> None:
    fmap = torch.randn(1, 4, 7, 7)
    out = roi_align(fmap, [torch.tensor([[0.0, 0.0, 224.0, 224.0]])], 7, 32, sampling_ratio=1)
    torch.testing.assert_close(out[0], fmap[0])


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_sampling_matrix_equals_torchvision(ratio: int) -> None:
    torch.manual_seed(0)
    fmap = torch.randn(1, 5, 7, 9)
    boxes = torch.tensor([[0, 0, 288, 224], [10.0, 20, 200, 150], [-20, 5, 300, 230], [100, 50, 130, 90]])
    ref = roi_align(fmap, [boxes], 7, 32, ratio)
    mat = sampling_matrix(boxes, 7, 9, 7, 32, ratio)
    mine = torch.einsum("npk,ck->ncp", mat, fmap[0].flatten(1)).reshape(4, 5, 7, 7)
    torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("ratio", [1, 2])
def test_separable_roi_align_equals_torchvision(ratio: int) -> None:
    from clipcrop_plugin.model.align import roi_align_separable

    torch.manual_seed(1)
    fmap = torch.randn(2, 6, 7, 9)
    boxes = [torch.tensor([[0, 0, 288, 224], [10.0, 20, 200, 150], [-20, 5, 300, 230]]),
             torch.tensor([[100.0, 50, 130, 90], [0, 0, 32, 32]])]
    ref = roi_align(fmap, boxes, 9, 32, ratio)
    torch.testing.assert_close(roi_align_separable(fmap, boxes, 9, 32, ratio), ref, atol=1e-5, rtol=1e-5)
    assert roi_align_separable(fmap, [torch.zeros(0, 4), boxes[1]], 9, 32, ratio).shape == (2, 6, 9, 9)
