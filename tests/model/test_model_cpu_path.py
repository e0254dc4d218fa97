"""The inference path (RoIAlign matrices and the flattened map shared by both knowledge branches,
the factored head) gives the reference path's numbers: each branch on its own, the direct head."""

from __future__ import annotations

import copy

import numpy as np
import torch

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.model import build_model
from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
from clipcrop_plugin.model.weights import load_state_file


def test_cpu_inference_path_matches_the_reference(tmp_path) -> None:  # noqa: ANN001
    cfg = tiny_config(128)
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg))).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for p in list(model.head.parameters()) + list(model.cke.mlp.parameters()) + list(model.ake.mlp.parameters()):
            p.normal_(0, 0.1)  # trained-looking branches: the two pools' outputs must not be swapped or shared
        model.ake.pool.q_proj.weight.mul_(1.5)
    model.refresh_text_cache()
    reference = copy.deepcopy(model)
    cands = [generate_candidates(300, 200), generate_candidates(200, 300)]
    boxes = [torch.from_numpy(c.boxes.astype(np.float32) * np.asarray([128 / c.width, 128 / c.height] * 2, np.float32))
             for c in cands]
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        fmap = model.features(x)
        scores = model.score_crops(fmap, boxes)
        elements = model.element_scores(fmap, boxes)
    with torch.enable_grad():  # the reference: the direct head path
        ref_map = reference.features(x)
        ref_scores = reference.score_crops(ref_map, boxes)
    with torch.no_grad():
        ref_map = ref_map.detach()
        comp = reference.knowledge_embeddings(ref_map, "composition", boxes)
        aes = reference.knowledge_embeddings(ref_map, "aesthetic", boxes)
        scale = reference.logit_scale.float().exp().clamp(max=100.0)
    for i in range(len(cands)):
        torch.testing.assert_close(scores[i], ref_scores[i].detach(), atol=1e-4, rtol=1e-4)
        ref_el = scale * torch.cat([comp[i] @ reference.cke_text.t(), aes[i] @ reference.ake_text.t()], dim=1)
        torch.testing.assert_close(elements[i], ref_el, atol=1e-4, rtol=1e-4)
    # the two branches really differ (so sharing the RoIAlign matrices did not merge them)
    assert not torch.allclose(elements[0][:, :5], elements[0][:, 5:])
