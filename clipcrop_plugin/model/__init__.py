"""The CLIPCropping network (paper section 3) and everything needed to load and run it.

Public API (used by the scorers and by ``trainer``):

- :class:`ModelConfig` - JSON-serialisable architecture settings.
- :func:`build_model` / :class:`CLIPCropping` - the network.
- :func:`pick_device` - ``"auto" | "cpu" | "cuda" | "mps"`` to a :class:`torch.device`.
- :func:`save_checkpoint`, :func:`load_checkpoint`, :func:`import_checkpoint` - our checkpoints.
- :func:`load_clip_state`, :func:`find_clip_weights` - pretrained open_clip weights.

Submodules import torch; import this package only where a model is really needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# Attributes are imported on first use (PEP 562): importing a light submodule such as
# ``checkpoints`` or ``weights`` to look for weights must not import torch and open_clip.
_LAZY = {
    "CheckpointInfo": "checkpoints", "import_checkpoint": "checkpoints", "load_checkpoint": "checkpoints",
    "read_checkpoint_info": "checkpoints", "save_checkpoint": "checkpoints",
    "ModelConfig": "config",
    "autocast_for": "device", "pick_device": "device",
    "CLIPCropping": "network", "build_model": "network",
    "ClipWeights": "weights", "find_clip_weights": "weights", "load_clip_state": "weights",
    "load_state_file": "weights",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CLIPCropping",
    "CheckpointInfo",
    "ClipWeights",
    "ModelConfig",
    "autocast_for",
    "build_model",
    "find_clip_weights",
    "import_checkpoint",
    "load_checkpoint",
    "load_clip_state",
    "load_state_file",
    "pick_device",
    "read_checkpoint_info",
    "save_checkpoint",
]
