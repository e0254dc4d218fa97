"""The CLIPCropping network (paper section 3): CLIP RN50 trunk, F_fusion + F_MLP, CKE/AKE.

One trunk pass per image serves everything: the cropping head (RoIAlign + RoDAlign on a
channel-reduced map), the CKE/AKE element embeddings of the full frame and of every crop
(RoIAligned to the attention pool's grid) and CLIP's own attention pool (zero-shot scoring).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..elements import AESTHETIC_ELEMENTS, COMPOSITION_ELEMENTS
from ..errors import WeightsError
from .align import rod_align, rod_parts, roi_align, roi_align_separable, sampling_matrix
from .config import ModelConfig
from .knowledge import KnowledgeBranch, PromptLearner, roi_attention_pool
from .trunk import drop_folded, folded_trunk, run_folded

STRIDE = 32
BRANCHES = ("composition", "aesthetic")


def create_clip(config: ModelConfig, empty: bool = False) -> nn.Module:
    """An open_clip CLIP model of the configured ResNet tower.

    ``empty=True`` skips random initialisation (the tensors are allocated but hold garbage):
    use it only when every tensor is loaded next, which saves time and the memory that
    initialisation temporaries would take.
    """
    from open_clip.model import CLIP

    cfg = config.open_clip_config()
    vision = dict(cfg.get("vision_cfg", {}))
    if not isinstance(vision.get("layers"), (list, tuple)):
        raise WeightsError(f"clip model {config.clip_model!r} is not a ResNet tower; CLIPCropping needs one")
    try:
        if not empty:
            return CLIP(embed_dim=cfg["embed_dim"], vision_cfg=vision, text_cfg=cfg["text_cfg"], quick_gelu=config.quick_gelu)
        with torch.device("meta"):
            clip = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=vision, text_cfg=cfg["text_cfg"], quick_gelu=config.quick_gelu)
    except (KeyError, TypeError) as exc:
        raise WeightsError(f"bad open_clip config for {config.clip_model!r}: {exc}") from exc
    clip.to_empty(device="cpu")
    # The causal mask is the one non-persistent buffer (not in any state dict): rebuild it.
    if getattr(clip, "attn_mask", None) is not None:
        n = clip.attn_mask.shape[0]
        clip.attn_mask = torch.full((n, n), float("-inf")).triu_(1)
    return clip


def create_clip_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and tensor shapes of the configured tower, without allocating it."""
    from open_clip.model import CLIP

    cfg = config.open_clip_config()
    vision = dict(cfg.get("vision_cfg", {}))
    if not isinstance(vision.get("layers"), (list, tuple)):
        raise WeightsError(f"clip model {config.clip_model!r} is not a ResNet tower; CLIPCropping needs one")
    try:
        with torch.device("meta"):
            clip = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=vision, text_cfg=cfg["text_cfg"], quick_gelu=config.quick_gelu)
    except (KeyError, TypeError) as exc:
        raise WeightsError(f"bad open_clip config for {config.clip_model!r}: {exc}") from exc
    return {k: tuple(v.shape) for k, v in clip.state_dict().items()}


def drop_text_modules(clip: nn.Module) -> None:
    """Remove CLIP's text tower in place (inference that has its text embeddings cached)."""
    for name in ("transformer", "token_embedding", "ln_final"):
        setattr(clip, name, None)
    clip.text_projection = None
    clip.positional_embedding = None


TEXT_PREFIXES = ("clip.transformer.", "clip.token_embedding.", "clip.ln_final.", "clip.text_projection",
                 "clip.positional_embedding", "cke_learner.", "ake_learner.")


def trunk_features(visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """F_CLIP-visual as a trunk: ModifiedResNet stem + layer1..4 -> (B, C, H/32, W/32).

    CPU inference (eval mode, no autograd) gets the same numbers, up to float rounding, from the
    BatchNorm-folded channels-last trunk of :mod:`.trunk`; training and other devices run the
    modules themselves.
    """
    x = images.to(dtype=visual.conv1.weight.dtype)
    if x.device.type == "cpu" and not visual.training and not torch.is_grad_enabled():
        plan = folded_trunk(visual)
        if plan is not None:
            return run_folded(plan, x)
    x = visual.stem(x)
    x = visual.layer1(x)
    x = visual.layer2(x)
    x = visual.layer3(x)
    return visual.layer4(x)


def input_size(width: int, height: int, config: ModelConfig) -> tuple[int, int]:
    """(W_in, H_in) of the trunk input for a ``width`` x ``height`` image."""
    s = config.image_size
    if config.input_mode == "square":
        return s, s
    short, long_ = (width, height) if width <= height else (height, width)
    long_in = min(long_ / max(short, 1) * s, config.max_aspect * s)
    long_in = max(STRIDE, int(round(long_in / STRIDE)) * STRIDE)
    return (s, long_in) if width <= height else (long_in, s)


def image_tensor(image: Image.Image, size: tuple[int, int], config: ModelConfig) -> torch.Tensor:
    """Resize (bicubic, as CLIP) and normalize one RGB PIL image to a (3, H, W) float tensor."""
    img = image.convert("RGB")
    if img.size != size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    t = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size[1], size[0], 3)
    t = t.permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (t - mean) / std


def default_prompts() -> dict[str, list[tuple[str, ...]]]:
    """Element prompts per branch, from :mod:`clipcrop_plugin.elements`."""
    return {"composition": [e.prompts for e in COMPOSITION_ELEMENTS], "aesthetic": [e.prompts for e in AESTHETIC_ELEMENTS]}


class CLIPCropping(nn.Module):
    """The CLIPCropping network around an open_clip ResNet CLIP model.

    ``clip`` should already hold pretrained weights when one is building a fresh model to train:
    CKE/AKE attention pools are initialised as copies of CLIP's own. ``prompts`` maps branch ->
    list of prompt tuples (defaults to :mod:`clipcrop_plugin.elements`; checkpoints store theirs).
    """

    def __init__(self, config: ModelConfig, clip: nn.Module | None = None,
                 prompts: dict[str, Sequence[Sequence[str]]] | None = None) -> None:
        super().__init__()
        self.config = config
        self.clip = clip if clip is not None else create_clip(config)
        visual = self.clip.visual
        if not hasattr(visual, "attnpool") or not hasattr(visual, "layer4"):
            raise WeightsError("CLIPCropping needs an open_clip ModifiedResNet visual tower")
        channels = visual.attnpool.k_proj.in_features
        embed_dim = visual.attnpool.c_proj.out_features
        self.pool_size = int(round((visual.attnpool.positional_embedding.shape[0] - 1) ** 0.5))
        a, r = config.align_size, config.reddim
        # F_fusion (eq. 12): channel reduction, then RoIAlign + RoDAlign (no parameters)
        self.reduce = nn.Conv2d(channels, r, config.reduce_kernel, padding=config.reduce_kernel // 2)
        # F_MLP (eq. 13), GAIC's head: a conv with kernel A over the AxA map == a linear layer on it
        h1, h2 = config.head_hidden
        self.head = nn.Sequential(nn.Linear(2 * r * a * a, h1), nn.ReLU(inplace=True), nn.Dropout(0.0),
                                  nn.Linear(h1, h2), nn.ReLU(inplace=True), nn.Linear(h2, 1))
        self.cke = KnowledgeBranch(visual.attnpool, embed_dim, config.knowledge_hidden)
        self.ake = KnowledgeBranch(visual.attnpool, embed_dim, config.knowledge_hidden)
        prompts = prompts or default_prompts()
        self.prompts = {k: [tuple(p) for p in v] for k, v in prompts.items()}
        self.cke_learner = PromptLearner(self.clip, self.prompts["composition"], config.n_ctx, config.ctx_init,
                                         embed_dim, config.meta_hidden_ratio)
        self.ake_learner = PromptLearner(self.clip, self.prompts["aesthetic"], config.n_ctx, config.ctx_init,
                                         embed_dim, config.meta_hidden_ratio)
        # Inference text embeddings (see refresh_text_cache); saved in checkpoints.
        self.register_buffer("cke_text", torch.zeros(len(self.prompts["composition"]), embed_dim))
        self.register_buffer("ake_text", torch.zeros(len(self.prompts["aesthetic"]), embed_dim))
        self.register_buffer("text_ready", torch.zeros((), dtype=torch.bool))

    # -- inputs ---------------------------------------------------------------------------
    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """(W_in, H_in) of the trunk input for an image of this size (config's input mode)."""
        return input_size(width, height, self.config)

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> (B, 3, H, W) normalized batch. All must map to one input size."""
        sizes = {self.input_size(*im.size) for im in images}
        if len(sizes) != 1:
            raise ValueError("images map to different input sizes; group them by input_size() first")
        size = sizes.pop()
        return torch.stack([image_tensor(im, size, self.config) for im in images])

    # -- trunk ----------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """One trunk pass for the whole batch: (B, 3, H, W) -> (B, C, H/32, W/32)."""
        return trunk_features(self.clip.visual, images)

    # -- cropping branch --------------------------------------------------------------------
    def score_crops(self, feature_map: torch.Tensor, boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """F_fusion + F_MLP: per image, (Ni, 4) boxes in input-tensor pixels -> (Ni,) scores."""
        a = self.config.align_size
        reduced = self.reduce(feature_map)
        counts = [int(b.reshape(-1, 4).shape[0]) for b in boxes]
        if torch.is_grad_enabled() or not isinstance(self.head[0], nn.Linear):
            roi = roi_align(reduced, boxes, a, STRIDE, self.config.fusion_sampling_ratio)
            rod = rod_align(reduced, boxes, a, STRIDE)
            scores = self.head(torch.cat([roi, rod], dim=1).flatten(1)).squeeze(-1)
        else:
            # Inference: the same numbers by cheaper routes (separable RoIAlign, factored RoD).
            roi = roi_align_separable(reduced, boxes, a, STRIDE, self.config.fusion_sampling_ratio)
            scores = self.head[1:](self._first_layer_factored(reduced, roi, boxes)).squeeze(-1)
        return list(scores.split(counts))

    def _rod_weights(self, w_rod: torch.Tensor, c: int, a: int) -> torch.Tensor:
        """The RoD half of the first layer pushed through avg_pool2d(2, 1): (Q, C, hidden), cached.

        The adjoint of the pooling lands each output weight on the 4 inputs it averaged. The
        result depends only on the weights, so it is kept until they change (version counter).
        """
        key = (w_rod.data_ptr(), self.head[0].weight._version, w_rod.device, w_rod.dtype)
        cache = self.__dict__.get("_rod_weight_cache")
        if cache is not None and cache[0] == key:
            return cache[1]
        hidden = w_rod.shape[0]
        wd = w_rod.reshape(hidden, c, a, a)
        spread = 0.25 * (F.pad(wd, (0, 1, 0, 1)) + F.pad(wd, (1, 0, 0, 1)) + F.pad(wd, (0, 1, 1, 0)) + F.pad(wd, (1, 0, 1, 0)))
        out = spread.flatten(2).permute(2, 1, 0).contiguous()
        self.__dict__["_rod_weight_cache"] = (key, out)
        return out

    def _first_layer_factored(self, reduced: torch.Tensor, roi: torch.Tensor,
                              boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head's first linear layer on [RoIAlign; RoDAlign] without materialising RoDAlign.

        RoDAlign is ``avg_pool2d(samples * keep_n)`` with per-image ``samples`` and a per-crop 0/1
        mask, and the layer is linear: its RoD half is pushed through the pooling (the pooling's
        adjoint spreads each weight over the 2x2 window it read) and onto each image's samples
        once, leaving a (s+1)^2 mask times a (s+1)^2 x hidden matrix per crop instead of a
        C*s*s x hidden product. Equal to the direct path up to float rounding.
        """
        lin = self.head[0]
        a = self.config.align_size
        c = reduced.shape[1]
        w_roi, w_rod = lin.weight[:, : c * a * a], lin.weight[:, c * a * a:]
        out = F.linear(roi.flatten(1), w_roi, lin.bias)
        parts = rod_parts(reduced, boxes, a, STRIDE)
        if parts is None:
            return out
        samples, _, keep = parts
        spread = self._rod_weights(w_rod, c, a).to(samples.dtype)  # (Q, C, hidden), Q = (s+1)^2
        q = spread.shape[0]
        # per image and grid point, the samples' contribution to every hidden unit: (B', Q, hidden)
        per_image = torch.bmm(samples.reshape(samples.shape[0], c, q).permute(2, 0, 1), spread).transpose(0, 1)
        masks = keep.flatten(1).to(per_image.dtype).split([int(b.reshape(-1, 4).shape[0]) for b in boxes])
        rod_part = torch.cat([m @ per_image[i] for i, m in enumerate(masks)])
        return out + rod_part.to(out.dtype)

    # -- knowledge branches -----------------------------------------------------------------
    def branch(self, name: str) -> tuple[KnowledgeBranch, PromptLearner]:
        """``"composition"`` -> (CKE, its learner); ``"aesthetic"`` -> (AKE, its learner)."""
        if name == "composition":
            return self.cke, self.cke_learner
        if name == "aesthetic":
            return self.ake, self.ake_learner
        raise ValueError(f"unknown branch {name!r}; use one of {', '.join(BRANCHES)}")

    def _sampling(self, feature_map: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        _, _, h, w = feature_map.shape
        return sampling_matrix(boxes.to(feature_map.device, torch.float32).reshape(-1, 4), h, w, self.pool_size,
                               STRIDE, self.config.pool_sampling_ratio)

    def full_boxes(self, feature_map: torch.Tensor) -> list[torch.Tensor]:
        """The full-frame box of each image of the batch, in input pixels."""
        b, _, h, w = feature_map.shape
        box = torch.tensor([[0.0, 0.0, w * STRIDE, h * STRIDE]], device=feature_map.device)
        return [box for _ in range(b)]

    def _padded_sampling(self, feature_map: torch.Tensor,
                         boxes: Sequence[torch.Tensor] | None) -> tuple[torch.Tensor | None, list[int]]:
        """Every image's RoIAlign matrices at once: ((B, Nmax, P*P, HW) or None, [Ni]).

        The images' box lists are padded to one length (with the full frame) so the whole batch
        goes through one set of kernels, not one per image; callers drop rows ``>= Ni``. Both
        knowledge branches pool the same boxes of the same map, so they share these.
        """
        boxes = self.full_boxes(feature_map) if boxes is None else boxes
        per_image = [b.to(feature_map.device, torch.float32).reshape(-1, 4) for b in boxes]
        counts = [int(b.shape[0]) for b in per_image]
        longest = max(counts, default=0)
        if longest == 0:
            return None, counts
        filler = self.full_boxes(feature_map)[0]
        padded = torch.stack([torch.cat([b, filler.expand(longest - len(b), 4)]) if len(b) < longest else b
                              for b in per_image])  # (B, Nmax, 4)
        hw = feature_map.shape[2] * feature_map.shape[3]
        return self._sampling(feature_map, padded).view(len(per_image), longest, -1, hw), counts

    def _pooled_padded(self, pool: nn.Module, feature_map: torch.Tensor, boxes: Sequence[torch.Tensor] | None,
                       shared: tuple[torch.Tensor | None, list[int]] | None = None) -> tuple[torch.Tensor, list[int]]:
        """The pool on every image's RoIs at once: ((B, Nmax, D), [Ni]); ``shared``: the
        :meth:`_padded_sampling` of these boxes, when already made."""
        sampling, counts = shared if shared is not None else self._padded_sampling(feature_map, boxes)
        if sampling is None:
            return feature_map.new_zeros((len(counts), 0, pool.c_proj.out_features)), counts
        return roi_attention_pool(pool, feature_map, sampling), counts

    def knowledge_embeddings(self, feature_map: torch.Tensor, branch: str,
                             boxes: Sequence[torch.Tensor] | None = None,
                             shared: tuple[torch.Tensor | None, list[int]] | None = None,
                             ) -> torch.Tensor | list[torch.Tensor]:
        """Normalized CKE/AKE visual embeddings (phi^visual, eq. 2 and 7).

        Without ``boxes``: the full frames, (B, D). With ``boxes`` (per image (Ni, 4) in input
        pixels): a list of (Ni, D), each crop RoIAligned to the pool's grid from the same map.
        ``shared``: :meth:`_padded_sampling` of ``boxes`` (when both branches pool them).
        """
        module, _ = self.branch(branch)
        pooled, counts = self._pooled_padded(module.pool, feature_map, boxes, shared)
        emb = module.project(pooled)  # (B, Nmax, D): one MLP call for the whole batch
        if boxes is None:
            return emb[:, 0]
        return [emb[i, :k] for i, k in enumerate(counts)]

    def text_embeddings(self, branch: str, visual_emb: torch.Tensor | None = None) -> torch.Tensor:
        """Element text embeddings through the prompt learner and CLIP's text encoder.

        ``visual_emb`` (B, D) conditions the meta-net (CoCoOp): returns (B, E, D). Without it
        the meta-net bias is zero: (E, D). E = 5 elements of the branch; rows are normalized.
        """
        _, learner = self.branch(branch)
        return learner(self.clip, visual_emb)

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's learned temperature (use ``.exp()`` as the InfoNCE logit multiplier)."""
        return self.clip.logit_scale

    @torch.no_grad()
    def refresh_text_cache(self, reference: dict[str, torch.Tensor] | None = None) -> None:
        """Compute the text embeddings inference uses and keep them in buffers (saved in checkpoints).

        CoCoOp conditions the text on each image, which would mean a text-encoder pass per
        photo at inference. Instead the meta-net is conditioned once on a reference visual
        embedding per branch (``reference[branch]``: (D,), e.g. the mean CKE/AKE embedding over
        the training set; the trainer passes it) or, without one, on nothing (zero bias).
        """
        for name, buf in (("composition", self.cke_text), ("aesthetic", self.ake_text)):
            ref = None if not reference or reference.get(name) is None else reference[name]
            if ref is None:
                emb = self.text_embeddings(name)
            else:
                emb = self.text_embeddings(name, F.normalize(ref.reshape(1, -1).float(), dim=-1).to(buf.device))[0]
            buf.copy_(emb.float())
        self.text_ready.fill_(True)

    def element_scores(self, feature_map: torch.Tensor, boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Eq. 24 for every box: sum of the Hadamard product of normalized visual and text embeddings.

        Returns per image (Ni, 10) in ELEMENT_NAMES order (5 composition, then 5 aesthetic),
        using the cached text embeddings (see :meth:`refresh_text_cache`), multiplied by CLIP's
        logit scale (``logit_scale.exp()``, the InfoNCE temperature of training): only relative
        sizes mean anything (paper 4.5), and this puts them on the scale of the training logits.
        """
        if not bool(self.text_ready):
            raise WeightsError("this model has no cached element text embeddings; call refresh_text_cache() first")
        # One flattened map and one set of RoIAlign matrices for both branches.
        fm = feature_map.contiguous()
        shared = self._padded_sampling(fm, boxes)
        comp = self.knowledge_embeddings(fm, "composition", boxes, shared)
        aes = self.knowledge_embeddings(fm, "aesthetic", boxes, shared)
        scale = self.logit_scale.detach().float().exp().clamp(max=100.0)
        counts = [int(c.shape[0]) for c in comp]
        both = torch.cat([torch.cat(comp).float().matmul(self.cke_text.t()),
                          torch.cat(aes).float().matmul(self.ake_text.t())], dim=1)  # (sum Ni, 10)
        return list((scale * both).split(counts))

    def forward(self, images: torch.Tensor, boxes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Scores of the boxes of each image (the inference path of the paper, Fig. 2c)."""
        return self.score_crops(self.features(images), boxes)

    def train(self, mode: bool = True) -> CLIPCropping:
        """nn.Module.train; entering training also frees the inference-only folded trunk weights
        (the version check would rebuild them anyway once the weights move)."""
        if mode:
            drop_folded(self.clip.visual)
        return super().train(mode)

    def drop_text_tower(self) -> None:
        """Free the text encoder for inference-only use (the cached text embeddings remain)."""
        if not bool(self.text_ready):
            raise WeightsError("refusing to drop the text tower before the text cache is computed")
        drop_text_modules(self.clip)
        self.cke_learner = None  # type: ignore[assignment]
        self.ake_learner = None  # type: ignore[assignment]


def build_model(config: ModelConfig | None = None, clip_state: dict[str, torch.Tensor] | None = None,
                prompts: dict[str, Sequence[Sequence[str]]] | None = None) -> CLIPCropping:
    """A fresh CLIPCropping: CLIP weights from ``clip_state`` (an open_clip state dict), new heads.

    CKE/AKE pools are copied from the loaded CLIP attention pool; the text cache is computed
    with a zero meta-net bias so the model can explain at once (the head is still untrained).
    """
    config = config or ModelConfig()
    clip = create_clip(config)
    if clip_state is not None:
        load_clip_into(clip, clip_state)
    model = CLIPCropping(config, clip, prompts)
    model.eval()
    model.refresh_text_cache()
    return model


def load_clip_into(clip: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an open_clip (or OpenAI-format) CLIP state dict strictly; mismatch -> WeightsError."""
    state = {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}
    for extra in ("input_resolution", "context_length", "vocab_size"):
        state.pop(extra, None)
    try:
        missing, unexpected = clip.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise WeightsError(f"CLIP weights do not fit the configured tower: {first[1] if len(first) > 1 else first[0]}") from exc
    if missing or unexpected:
        what = missing[:3] if missing else unexpected[:3]
        raise WeightsError(f"CLIP weights do not fit the configured tower ({len(missing)} missing, "
                           f"{len(unexpected)} unexpected keys, e.g. {', '.join(what)})")
