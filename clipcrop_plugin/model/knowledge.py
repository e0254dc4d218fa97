"""CKE/AKE knowledge embeddings, the attention pool applied to RoIs, and CoCoOp prompt learners.

The attention-pool trick: open_clip's ``AttentionPool2d`` adds a positional embedding to each
of the P*P (+1 mean) tokens and then applies per-token *linear* q/k/v projections; RoIAlign is
linear too. So for crop ``n`` with RoIAlign matrix ``B_n`` (P*P x HW, see
:func:`~clipcrop_plugin.model.align.sampling_matrix`):

    k_tokens = S_n (X W_k^T) + (pos W_k^T + b_k),   S_n = [mean_rows(B_n); B_n]

and likewise for v; the query is the mean token's only. Projecting the whole map once and
carrying ``S_n`` through the attention algebra (never materialising per-crop tokens) gives
exactly the pool's output on ``roi_align(X, box)`` at a per-crop cost of a few hundred
thousand multiply-adds plus the output projection, instead of ~425M.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KnowledgeBranch", "PromptLearner", "encode_prompt_embeddings", "encode_texts", "roi_attention_pool"]


def _pos_projections(pool: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Projected positional terms (pos W_q[0] + b_q, pos W_k + b_k, pos W_v + b_v).

    They depend only on parameters, so at inference (no grad) they are cached on the pool and
    recomputed when a parameter changes (its version counter moves) or dtype/device differ.
    """
    pos = pool.positional_embedding
    params = (pos, pool.q_proj.weight, pool.q_proj.bias, pool.k_proj.weight, pool.k_proj.bias,
              pool.v_proj.weight, pool.v_proj.bias)
    cacheable = not torch.is_grad_enabled()
    key = tuple((p.data_ptr(), p._version, p.device) for p in params)
    cache = pool.__dict__.get("_clipcrop_pos_cache")
    if cacheable and cache is not None and cache[0] == key:
        return cache[1]
    # fp32 regardless of autocast: these terms are small and shared by every crop.
    with torch.autocast(pos.device.type, enabled=False):
        pq0 = pool.q_proj(pos[:1].float())[0]
        pk = pool.k_proj(pos.float())
        pv = pool.v_proj(pos.float())
    out = (pq0, pk, pv)
    if cacheable:
        pool.__dict__["_clipcrop_pos_cache"] = (key, tuple(t.detach() for t in out))
    return out


def roi_attention_pool(pool: nn.Module, feature_map: torch.Tensor, sampling: torch.Tensor) -> torch.Tensor:
    """open_clip ``AttentionPool2d`` applied to RoIAligned crops of a feature map.

    One image: ``feature_map`` (C, H, W), ``sampling`` (N, P*P, H*W) RoIAlign matrices
    (P = the pool's grid side, 7 for RN50 at 224) -> (N, output_dim). A batch: ``feature_map``
    (B, C, H, W), ``sampling`` (B, N, P*P, H*W) -> (B, N, output_dim); every image is handled
    by the same batched operations, so the cost on a GPU does not grow with kernel launches per
    image. Equal to ``pool(roi_align(feature_map, boxes, P))`` up to float rounding.
    """
    if feature_map.dim() == 3:
        return roi_attention_pool(pool, feature_map.unsqueeze(0), sampling.unsqueeze(0))[0]
    bsz, c = feature_map.shape[:2]
    x = feature_map.flatten(2).transpose(1, 2)  # (B, HW, C)
    _, n, tokens, hw = sampling.shape
    heads = pool.num_heads
    d = c // heads
    sampling = sampling.to(x.dtype)
    pq0, pk, pv = (t.to(x.dtype) for t in _pos_projections(pool))
    w = sampling.mean(dim=2)  # (B, N, HW): the mean token as a combination of map positions
    if n > hw:
        q = torch.bmm(w, F.linear(x, pool.q_proj.weight))
    else:
        q = F.linear(torch.bmm(w, x), pool.q_proj.weight)
    q = (q + pq0) * (d ** -0.5)
    # k and v of every map position in one projection each for the whole batch.
    k_map = F.linear(x, pool.k_proj.weight).view(bsz, hw, heads, d)
    v_map = F.linear(x, pool.v_proj.weight).view(bsz, hw, heads, d)
    s = torch.cat([w.unsqueeze(2), sampling], dim=2)  # (B, N, T, HW), T = P*P + 1
    qh = q.view(bsz, n, heads, d)
    g = torch.einsum("bnhd,bkhd->bnhk", qh, k_map)  # query against every map position
    logits = torch.einsum("bnhk,bntk->bnht", g, s) + torch.einsum("bnhd,thd->bnht", qh, pk.view(-1, heads, d))
    attn = logits.float().softmax(dim=-1).to(x.dtype)
    mixed = torch.einsum("bnht,bntk->bnhk", attn, s)
    out = torch.einsum("bnhk,bkhd->bnhd", mixed, v_map) + torch.einsum("bnht,thd->bnhd", attn, pv.view(-1, heads, d))
    return pool.c_proj(out.reshape(bsz, n, c))


class KnowledgeBranch(nn.Module):
    """CKE or AKE (paper 3.1/3.2): an AttentionPool2d and a residual MLP into CLIP's joint space.

    The pool starts as a copy of CLIP's own (pretrained) attention pool and the MLP's last layer
    starts at zero, so an untrained branch is exactly CLIP's image embedding: training moves it
    from a meaningful start instead of from noise.
    """

    def __init__(self, clip_pool: nn.Module, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.pool = copy.deepcopy(clip_pool)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.GELU(), nn.Linear(hidden, embed_dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled (…, D) -> normalized visual knowledge embedding (…, D)."""
        return F.normalize(pooled + self.mlp(pooled), dim=-1)


class PromptLearner(nn.Module):
    """CoCoOp prompt learner: shared context vectors plus a meta-net bias from the visual embedding.

    Prompt ``j`` of element ``e`` is tokenized as ``"X X X X <prompt>."``; the ``n_ctx`` X
    embeddings are replaced by ``ctx + meta_net(visual)``. ``prompts`` is a list (one per
    element) of tuples of prompt strings; an element's text embedding is the normalized mean
    of its prompts' normalized embeddings.
    """

    def __init__(self, clip: nn.Module, prompts: Sequence[Sequence[str]], n_ctx: int, ctx_init: str,
                 vis_dim: int, meta_hidden_ratio: int) -> None:
        super().__init__()
        import open_clip

        self.n_ctx = n_ctx
        self.prompts = [tuple(p) for p in prompts]
        width = clip.token_embedding.weight.shape[1]
        context_length = clip.context_length
        words = ctx_init.split()
        if words and len(open_clip.tokenize([ctx_init], context_length=context_length)[0].nonzero()) - 2 == n_ctx:
            with torch.no_grad():
                ids = open_clip.tokenize([ctx_init], context_length=context_length)
                ctx = clip.token_embedding(ids)[0, 1:1 + n_ctx].clone()
        else:
            ctx = torch.randn(n_ctx, width) * 0.02
        self.ctx = nn.Parameter(ctx)
        hidden = max(vis_dim // meta_hidden_ratio, 1)
        self.meta_net = nn.Sequential(nn.Linear(vis_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, width))
        placeholder = " ".join(["X"] * n_ctx)
        flat = [f"{placeholder} {p.rstrip('.')}." for group in self.prompts for p in group]
        self.register_buffer("tokens", open_clip.tokenize(flat, context_length=context_length), persistent=False)
        owner = torch.tensor([i for i, group in enumerate(self.prompts) for _ in group])
        self.register_buffer("owner", owner, persistent=False)

    def forward(self, clip: nn.Module, visual: torch.Tensor | None = None) -> torch.Tensor:
        """Element text embeddings: (E, D) without ``visual``, else (B, E, D); normalized."""
        batch = 1 if visual is None else visual.shape[0]
        ctx = self.ctx.unsqueeze(0).expand(batch, -1, -1)
        if visual is not None:
            ctx = ctx + self.meta_net(visual.to(self.ctx.dtype)).unsqueeze(1)
        base = clip.token_embedding(self.tokens)  # (M, L, width): prefix/suffix follow the live weights
        m, length, width = base.shape
        emb = base.unsqueeze(0).expand(batch, -1, -1, -1)
        emb = torch.cat([emb[:, :, :1], ctx.unsqueeze(1).expand(-1, m, -1, -1).to(emb.dtype), emb[:, :, 1 + self.n_ctx:]], dim=2)
        feats = encode_prompt_embeddings(clip, emb.reshape(batch * m, length, width), self.tokens.repeat(batch, 1))
        feats = F.normalize(feats, dim=-1).view(batch, m, -1)
        n_el = len(self.prompts)
        summed = feats.new_zeros(batch, n_el, feats.shape[-1]).index_add_(1, self.owner, feats)
        out = F.normalize(summed, dim=-1)
        return out[0] if visual is None else out


def encode_prompt_embeddings(clip: nn.Module, embeddings: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's text encoder from token *embeddings* (so learned context can replace words)."""
    x = embeddings + clip.positional_embedding.to(embeddings.dtype)
    x = clip.transformer(x, attn_mask=clip.attn_mask)
    x = clip.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
    proj = clip.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


@torch.no_grad()
def encode_texts(clip: nn.Module, groups: Sequence[Sequence[str]]) -> torch.Tensor:
    """Plain CLIP text embeddings: one normalized row per group (mean of its prompts)."""
    import open_clip

    flat = [p for g in groups for p in g]
    device = clip.token_embedding.weight.device
    tokens = open_clip.tokenize(flat, context_length=clip.context_length).to(device)
    feats = F.normalize(clip.encode_text(tokens).float(), dim=-1)
    rows, start = [], 0
    for g in groups:
        rows.append(F.normalize(feats[start:start + len(g)].mean(0), dim=-1))
        start += len(g)
    return torch.stack(rows)
