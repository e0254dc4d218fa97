"""Device choice: CUDA (autocast to fp16), Apple MPS, or CPU."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager as ContextManager

import torch

from ..errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` (or ``cuda:1``) into a device; an unavailable one is a ConfigError."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":", 1)[0]
    if base not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available")
    if base == "mps" and not _mps_available():
        raise ConfigError("device 'mps' requested but Apple MPS is not available")
    return torch.device(name)


def autocast_for(device: torch.device) -> ContextManager[object]:
    """fp16 autocast on CUDA (where it pays), a no-op elsewhere (CPU/MPS stay fp32 for accuracy)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
