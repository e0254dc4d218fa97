"""The CPU inference path (BatchNorm-folded channels-last trunk, map-projected attention pools,
factored head) against the straightforward one: the modules' own forward, torchvision RoIAlign per
crop and open_clip's AttentionPool2d on each RoIAligned crop. And training still runs, and moves,
the real parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.config import Settings
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.model import build_model, save_checkpoint
from clipcrop_plugin.model.align import rod_align, roi_align
from clipcrop_plugin.model.inference import group_inputs
from clipcrop_plugin.model.network import STRIDE, CLIPCropping, trunk_features
from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
from clipcrop_plugin.model.trunk import folded_trunk
from clipcrop_plugin.model.weights import load_state_file
from clipcrop_plugin.scoring.registry import load_scorer

TRAINED = {"stage": "cropping", "lineage": ["composition", "aesthetic", "cropping"], "trunk": "pretrained"}


def _modules_trunk(visual: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))


def _trained_looking(cfg, tmp_path: Path) -> CLIPCropping:  # noqa: ANN001 - ModelConfig
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg)))
    torch.manual_seed(5)
    with torch.no_grad():
        for p in [*model.head.parameters(), *model.reduce.parameters(), *model.cke.mlp.parameters(),
                  *model.ake.mlp.parameters()]:
            p.normal_(0, 0.4)
        for pool in (model.cke.pool, model.ake.pool):  # the two branches' pools drift apart in training
            for p in pool.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    model.refresh_text_cache()
    return model


def _straightforward(model: CLIPCropping, images: torch.Tensor, boxes: list[torch.Tensor]):  # noqa: ANN202
    """Scores and element scores with no shortcut: every crop pooled on its own RoIAligned map."""
    fm = _modules_trunk(model.clip.visual, images)
    reduced = model.reduce(fm)
    a = model.config.align_size
    roi = roi_align(reduced, boxes, a, STRIDE, model.config.fusion_sampling_ratio)
    rod = rod_align(reduced, boxes, a, STRIDE)
    scores = model.head(torch.cat([roi, rod], dim=1).flatten(1)).squeeze(-1).split([len(b) for b in boxes])
    scale = model.logit_scale.float().exp().clamp(max=100.0)
    elements = []
    for i, b in enumerate(boxes):
        crops = roi_align(fm[i:i + 1], [b], model.pool_size, STRIDE, model.config.pool_sampling_ratio)
        comp = model.cke.project(model.cke.pool(crops))
        aes = model.ake.project(model.ake.pool(crops))
        elements.append(scale * torch.cat([comp @ model.cke_text.t(), aes @ model.ake_text.t()], dim=1))
    return list(scores), elements


def _photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    out = []
    for i, (w, h) in enumerate([(360, 240), (240, 360), (300, 300)]):
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        arr[h // 4: h // 2, w // 3: w // 2] = (250, 200, 40)
        path = tmp_path / f"p{i}.jpg"
        Image.fromarray(arr).save(path, quality=92)
        out.append(path)
    return out


@pytest.mark.parametrize("input_mode", ["square", "aspect"])
def test_scorer_equals_the_straightforward_path(tmp_path: Path, input_mode: str) -> None:
    cfg = tiny_config(128, input_mode=input_mode)
    ckpt = save_checkpoint(_trained_looking(cfg, tmp_path), tmp_path / "ck", provenance=TRAINED).path
    scorer = load_scorer("clipcropping", settings=Settings(model_dir=str(tmp_path / "m")), device="cpu", weights=str(ckpt))
    loaded = [load_image(p, min_side=scorer.min_side) for p in _photos(tmp_path)]
    cands = [generate_candidates(im.info.width, im.info.height) for im in loaded]
    results = scorer.score(loaded, cands)
    model = scorer.model
    assert folded_trunk(model.clip.visual) is not None  # the fast trunk really ran
    worst_score = worst_element = 0.0
    with torch.no_grad():
        for g in group_inputs(loaded, cands, model.config, torch.device("cpu")):
            ref_scores, ref_elements = _straightforward(model, g.images, g.boxes)
            for j, i in enumerate(g.indices):
                assert results[i].scores.shape == (len(cands[i]),)
                worst_score = max(worst_score, float(np.abs(results[i].scores - ref_scores[j].numpy()).max()))
                worst_element = max(worst_element, float(np.abs(results[i].elements - ref_elements[j].numpy()).max()))
    print(f"max abs difference: scores {worst_score:.2e}, elements {worst_element:.2e}")
    assert worst_score <= 1e-4 and worst_element <= 1e-4, (worst_score, worst_element)
    # and the comparison has teeth: the scores and elements vary across crops
    assert min(np.ptp(r.scores) for r in results) > 1e-2 and min(np.ptp(r.elements[:, 0]) for r in results) > 1e-2


def test_training_moves_the_branches_and_inference_follows(tmp_path: Path) -> None:
    cfg = tiny_config(64)
    model = _trained_looking(cfg, tmp_path)
    keys = sorted(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [8.0, 4.0, 56.0, 60.0]]), torch.tensor([[4.0, 0.0, 60.0, 50.0]])]
    with torch.no_grad():
        before = trunk_features(model.clip.visual, x)  # builds the folded weights of the current parameters
    assert folded_trunk(model.clip.visual) is not None
    watched = {"cke.q": model.cke.pool.q_proj.weight, "cke.k": model.cke.pool.k_proj.weight,
               "cke.v": model.cke.pool.v_proj.weight, "cke.c": model.cke.pool.c_proj.weight,
               "cke.pos": model.cke.pool.positional_embedding, "ake.q": model.ake.pool.q_proj.weight,
               "ake.v": model.ake.pool.v_proj.weight, "ake.mlp": model.ake.mlp[0].weight,
               "head": model.head[0].weight, "trunk": model.clip.visual.layer2[0].conv2.weight}
    start = {k: v.detach().clone() for k, v in watched.items()}
    bn = model.clip.visual.layer1[0].bn1
    stats = bn.running_mean.clone()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    fm = model.features(x)
    comp = torch.cat(model.knowledge_embeddings(fm, "composition", boxes))
    aes = torch.cat(model.knowledge_embeddings(fm, "aesthetic", boxes))
    scores = torch.cat(model.score_crops(fm, boxes))
    loss = (comp @ model.cke_text[0]).sum() - (aes @ model.ake_text[2]).sum() + scores.pow(2).sum()
    loss.backward()
    for name, p in watched.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    for name, p in watched.items():
        assert not torch.equal(p.detach(), start[name]), name
    assert not torch.equal(bn.running_mean, stats)  # train mode ran the real BatchNorm
    model.eval()
    with torch.no_grad():
        after = trunk_features(model.clip.visual, x)
        assert torch.isfinite(after).all(), after.abs().max()
        torch.testing.assert_close(after, _modules_trunk(model.clip.visual, x), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(after, before)  # the folded weights were rebuilt, not reused
        # a running statistic changed in place, in eval mode: rebuilt again
        bn.running_mean.add_(0.3)
        torch.testing.assert_close(trunk_features(model.clip.visual, x), _modules_trunk(model.clip.visual, x),
                                   atol=1e-5, rtol=1e-4)
    assert sorted(model.state_dict()) == keys  # derived weights never enter state dicts or checkpoints


def test_an_unusual_tower_runs_its_own_modules(tmp_path: Path) -> None:
    cfg = tiny_config(64)
    model = _trained_looking(cfg, tmp_path)
    visual = model.clip.visual
    visual.layer3[0].act2 = nn.GELU()  # not a ReLU: folding must not assume one
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert folded_trunk(visual) is None
        torch.testing.assert_close(trunk_features(visual, x), _modules_trunk(visual, x))
