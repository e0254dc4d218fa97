"""Tiny, randomly initialised towers for tests and benchmarks (never for users' photos).

``tiny_config()`` is an open_clip ResNet CLIP small enough to run in milliseconds on a CPU;
``write_clip_weights(path, config)`` saves a random-init open_clip state dict the way open_clip
stores one, so tests exercise the real local-file loading path without any download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import ModelConfig


def tiny_clip_config(image_size: int = 64, width: int = 8, embed_dim: int = 32) -> dict[str, Any]:
    """An open_clip model config dict: ResNet layers [1,1,1,1], a one-layer text tower."""
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "layers": [1, 1, 1, 1], "width": width, "patch_size": None},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def tiny_config(image_size: int = 64, **overrides: Any) -> ModelConfig:
    """A ModelConfig around :func:`tiny_clip_config` (clip_model name ``tiny-rn``)."""
    values: dict[str, Any] = {"clip_model": "tiny-rn", "clip_pretrained": "random",
                              "clip_config": tiny_clip_config(image_size), "image_size": image_size,
                              "reddim": 4, "align_size": 5, "head_hidden": (16, 8), "knowledge_hidden": 16, "n_ctx": 2}
    values.update(overrides)
    return ModelConfig(**values)


def write_clip_weights(path: str | Path, config: ModelConfig, seed: int = 0) -> Path:
    """Save a random-init CLIP state dict for ``config`` (``.safetensors``, or ``.pt``/``.bin`` via torch.save)."""
    from .network import create_clip

    torch.manual_seed(seed)
    clip = create_clip(config)
    # Random BatchNorm statistics keep activations non-degenerate in eval mode.
    for module in clip.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
    state = {k: v.contiguous() for k, v in clip.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    return path
