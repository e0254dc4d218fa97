"""The ResNet trunk for CPU inference: BatchNorm folded into the convolutions, channels-last.

In eval mode a BatchNorm is a per-channel affine map, so ``bn(conv(x))`` is one convolution
with scaled weights and a bias: the trunk then makes one pass over each activation where it made
two. The folded weights are kept channels-last, where oneDNN's convolutions need no layout
reorder and open_clip's anti-aliasing ``AvgPool2d(2)`` (stem and every stride-2 block) costs a
tenth of what it costs on an NCHW tensor; the first block's ``AvgPool2d(1)`` is an identity and
is skipped. Together that is ~15-20% of an RN50 trunk pass on a CPU; the numbers equal the
modules' own up to float rounding.

The folded weights are derived data: they live outside the parameters (state dicts and
checkpoints are unchanged), are built on first use and rebuilt whenever a parameter or running
statistic changes (version counters, storage, dtype or device), and are used only where the
modules' own forward would give the same thing: eval mode and no autograd.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["folded_trunk", "run_folded", "drop_folded"]

_CACHE = "_clipcrop_folded_trunk"


class FoldedConv(NamedTuple):
    """A convolution with its BatchNorm folded in."""

    weight: torch.Tensor
    bias: torch.Tensor
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int


class FoldedBlock(NamedTuple):
    """One open_clip ``Bottleneck``: three folded convs, its pooling and its shortcut."""

    conv1: FoldedConv
    conv2: FoldedConv
    pool: int  # 1: none
    conv3: FoldedConv
    shortcut: tuple[int, FoldedConv] | None  # (pool, conv) or the identity


class FoldedTrunk(NamedTuple):
    """Stem convs, the stem's pool and the bottlenecks of layer1..4, all folded."""

    stem: tuple[FoldedConv, ...]
    stem_pool: int
    blocks: tuple[FoldedBlock, ...]


def _pool_size(module: nn.Module) -> int | None:
    """Kernel of a plain non-overlapping average pool (1 for an identity); None for anything else."""
    if isinstance(module, nn.Identity):
        return 1
    if not isinstance(module, nn.AvgPool2d):
        return None
    k, s, p = module.kernel_size, module.stride, module.padding
    if isinstance(k, tuple) or k != s or p not in (0, (0, 0)) or module.ceil_mode or module.divisor_override:
        return None
    return int(k)


def _fold(conv: nn.Module, bn: nn.Module) -> FoldedConv | None:
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d) or conv.padding_mode != "zeros":
        return None
    if bn.running_mean is None or bn.running_var is None or bn.weight is None or bn.bias is None:
        return None
    scale = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    weight = (conv.weight.float() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
    weight = weight.contiguous(memory_format=torch.channels_last)
    bias = bn.bias.float() - bn.running_mean.float() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.float() * scale
    return FoldedConv(weight, bias.to(conv.weight.dtype), conv.stride, conv.padding, conv.dilation, conv.groups)


def _relu(module: nn.Module) -> bool:
    return isinstance(module, nn.ReLU)


def _block(blk: nn.Module) -> FoldedBlock | None:
    names = ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "avgpool", "conv3", "bn3", "act3", "downsample")
    if not all(hasattr(blk, n) for n in names) or not all(_relu(getattr(blk, a)) for a in ("act1", "act2", "act3")):
        return None
    c1, c2, c3 = _fold(blk.conv1, blk.bn1), _fold(blk.conv2, blk.bn2), _fold(blk.conv3, blk.bn3)
    pool = _pool_size(blk.avgpool)
    if c1 is None or c2 is None or c3 is None or pool is None:
        return None
    shortcut = None
    if blk.downsample is not None:
        ds = list(blk.downsample)
        if len(ds) != 3 or (ds_pool := _pool_size(ds[0])) is None or (ds_conv := _fold(ds[1], ds[2])) is None:
            return None
        shortcut = (ds_pool, ds_conv)
    return FoldedBlock(c1, c2, pool, c3, shortcut)


def _key(modules: list[nn.Module]) -> tuple[tuple[int, int], ...]:
    """Storage and version of every tensor the folded weights come from: any in-place update,
    load_state_dict, ``.to()`` or ``.half()`` changes it."""
    return tuple((t.data_ptr(), t._version) for m in modules for d in (m._parameters, m._buffers)
                 for t in d.values() if t is not None)


def _build(visual: nn.Module) -> FoldedTrunk | None:
    stem = tuple(_fold(getattr(visual, f"conv{i}", None), getattr(visual, f"bn{i}", None)) for i in (1, 2, 3))
    acts = all(_relu(getattr(visual, f"act{i}", None)) for i in (1, 2, 3))
    stem_pool = _pool_size(getattr(visual, "avgpool", None))
    if any(c is None for c in stem) or not acts or stem_pool is None:
        return None
    blocks = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(visual, name, None)
        if not isinstance(layer, nn.Sequential):
            return None
        for blk in layer:
            folded = _block(blk)
            if folded is None:
                return None
            blocks.append(folded)
    return FoldedTrunk(stem, stem_pool, tuple(blocks))  # type: ignore[arg-type]


@torch.no_grad()
def folded_trunk(visual: nn.Module) -> FoldedTrunk | None:
    """The folded form of an open_clip ``ModifiedResNet``'s stem and layers, cached on it.

    None when the tower is not the standard ModifiedResNet (then callers run its modules).
    """
    cache = visual.__dict__.get(_CACHE)
    # Walking the module tree costs more than the check itself, so the list is kept with the cache.
    modules = cache[0] if cache is not None else [m for m in visual.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    key = _key(modules)
    if cache is not None and cache[1] == key:
        return cache[2]
    plan = _build(visual)
    visual.__dict__[_CACHE] = (modules, key, plan)
    return plan


def drop_folded(visual: nn.Module) -> None:
    """Forget the folded weights (they are rebuilt on next use); frees their memory."""
    visual.__dict__.pop(_CACHE, None)


def _conv(x: torch.Tensor, c: FoldedConv, relu: bool) -> torch.Tensor:
    y = F.conv2d(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups)
    return F.relu_(y) if relu else y


def _avg_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    return x if k == 1 else F.avg_pool2d(x, k)


def run_folded(plan: FoldedTrunk, x: torch.Tensor) -> torch.Tensor:
    """Stem + layer1..4 with the folded weights: (B, 3, H, W) -> (B, C, H/32, W/32), contiguous."""
    x = x.contiguous(memory_format=torch.channels_last)
    for conv in plan.stem:
        x = _conv(x, conv, relu=True)
    x = _avg_pool(x, plan.stem_pool)
    for blk in plan.blocks:
        out = _conv(_conv(x, blk.conv1, relu=True), blk.conv2, relu=True)
        out = _conv(_avg_pool(out, blk.pool), blk.conv3, relu=False)
        identity = x if blk.shortcut is None else _conv(_avg_pool(x, blk.shortcut[0]), blk.shortcut[1], relu=False)
        x = F.relu_(out.add_(identity))
    # Callers flatten and view the map in NCHW order; it is small (C x H/32 x W/32), so the copy is cheap.
    return x.contiguous()
