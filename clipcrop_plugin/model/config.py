"""Architecture settings of the CLIPCropping network, stored in every checkpoint's sidecar."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import WeightsError

INPUT_MODES = ("square", "aspect")


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network's shapes (weights come separately).

    ``clip_model`` names an open_clip ResNet tower (``RN50`` by default); ``clip_config`` may
    instead carry a full open_clip model config dict (tests use tiny towers this way).
    ``input_mode``: ``"square"`` resizes the photo to ``image_size`` x ``image_size`` as the
    paper does; ``"aspect"`` keeps the aspect ratio with the short side ``image_size`` and both
    sides multiples of 32 (the long side capped at ``max_aspect`` times the short side).
    """

    clip_model: str = "RN50"
    clip_pretrained: str = "openai"
    clip_config: dict[str, Any] | None = None
    quick_gelu: bool = True  # OpenAI's CLIP weights were trained with QuickGELU
    image_size: int = 224
    input_mode: str = "square"
    max_aspect: float = 2.0
    # F_fusion (eq. 12), GAIC style
    reddim: int = 32
    reduce_kernel: int = 1
    align_size: int = 9
    fusion_sampling_ratio: int = 2
    # F_MLP (eq. 13)
    head_hidden: tuple[int, int] = (768, 128)
    # CKE / AKE: attention pool (initialised from CLIP's) + residual MLP into the joint space
    knowledge_hidden: int = 256
    pool_sampling_ratio: int = 1
    # CoCoOp prompt learners
    n_ctx: int = 4
    ctx_init: str = "a photo of a"
    meta_hidden_ratio: int = 16
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_mode not in INPUT_MODES:
            raise WeightsError(f"input_mode must be one of {', '.join(INPUT_MODES)}, not {self.input_mode!r}")
        if self.image_size % 32 or self.image_size < 64:
            raise WeightsError(f"image_size must be a multiple of 32 and >= 64, not {self.image_size}")
        self.head_hidden = tuple(int(v) for v in self.head_hidden)  # type: ignore[assignment]
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error (a newer format)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise WeightsError(f"model config has unknown key(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise WeightsError(f"bad model config: {exc}") from exc

    def open_clip_config(self) -> dict[str, Any]:
        """The open_clip model config dict of the tower (from ``clip_config`` or open_clip's registry)."""
        if self.clip_config is not None:
            return dict(self.clip_config)
        import open_clip

        cfg = open_clip.get_model_config(self.clip_model)
        if cfg is None:
            raise WeightsError(f"open_clip has no model config named {self.clip_model!r}")
        return dict(cfg)


def pretrained_model_config(name: str, pretrained: str) -> ModelConfig:
    """The config of an open_clip tower as its pretrained weights expect it.

    Input size from the tower's own config; activation and normalisation from open_clip's
    pretrained registry (OpenAI's weights use QuickGELU and their own mean/std).
    """
    base = ModelConfig(clip_model=name, clip_pretrained=pretrained)
    vision = base.open_clip_config().get("vision_cfg", {})
    if isinstance(vision.get("image_size"), (list, tuple)):
        raise WeightsError(f"{name} has a non-square input; clipcrop needs a square ResNet tower")
    size = int(vision.get("image_size", base.image_size))
    import open_clip

    pcfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    extra = {k: tuple(pcfg[k]) for k in ("mean", "std") if pcfg.get(k)}
    return ModelConfig(clip_model=name, clip_pretrained=pretrained, image_size=size,
                       quick_gelu=bool(pcfg.get("quick_gelu", pretrained == "openai")), **extra)
