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

from .checkpoints import CheckpointInfo, import_checkpoint, load_checkpoint, read_checkpoint_info, save_checkpoint
from .config import ModelConfig
from .device import autocast_for, pick_device
from .network import CLIPCropping, build_model
from .weights import ClipWeights, find_clip_weights, load_clip_state, load_state_file

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
