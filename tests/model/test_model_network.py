"""The CLIPCropping network: shapes, the RoI attention-pool identity, one trunk pass, eq. 24."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.imaging import LoadedImage
from clipcrop_plugin.model import ModelConfig, build_model, network
from clipcrop_plugin.model.align import roi_align, sampling_matrix
from clipcrop_plugin.model.inference import group_inputs
from clipcrop_plugin.model.knowledge import roi_attention_pool
from clipcrop_plugin.model.network import CLIPCropping, input_size
from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
from clipcrop_plugin.model.weights import load_state_file
from clipcrop_plugin.results import PhotoInfo


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> CLIPCropping:
    cfg = tiny_config()
    path = write_clip_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", cfg)
    return build_model(cfg, load_state_file(path))


def _loaded(w: int, h: int, seed: int = 0) -> LoadedImage:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    info = PhotoInfo(path=f"/x/{seed}.jpg", width=w * 4, height=h * 4, stored_width=w * 4, stored_height=h * 4,
                     orientation=1, has_orientation_tag=False, format="JPEG")
    return LoadedImage(image=img, info=info)


def test_attention_pool_trick_matches_open_clip_on_roi_features() -> None:
    """Projecting the whole map once equals open_clip's AttentionPool2d on RoIAligned crops."""
    from open_clip.modified_resnet import AttentionPool2d

    torch.manual_seed(0)
    pool = AttentionPool2d(7, 64, 4, 32).eval()
    with torch.no_grad():
        for p in (pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias, pool.c_proj.bias):
            p.normal_()  # non-zero biases: the mean token and positional terms must carry them correctly
    fmap = torch.randn(64, 9, 7)
    boxes = torch.tensor([[0.0, 0.0, 224.0, 288.0], [20.0, 30.0, 180.0, 250.0], [100.0, 0.0, 224.0, 140.0]])
    with torch.no_grad():
        for ratio in (1, 2):
            ref = pool(roi_align(fmap[None], [boxes], 7, 32, ratio))
            got = roi_attention_pool(pool, fmap, sampling_matrix(boxes, 9, 7, 7, 32, ratio))
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
        # the cached positional projections are refreshed when the weights change
        pool.k_proj.bias.add_(1.0)
        ref = pool(roi_align(fmap[None], [boxes], 7, 32, 1))
        got = roi_attention_pool(pool, fmap, sampling_matrix(boxes, 9, 7, 7, 32, 1))
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_full_frame_knowledge_equals_clip_image_embedding_at_init(tiny: CLIPCropping) -> None:
    """CKE starts as CLIP's own pool + a zero MLP: full-frame embedding == normalized encode_image."""
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = F.normalize(tiny.clip.encode_image(x), dim=-1)
        got = tiny.knowledge_embeddings(tiny.features(x), "composition")
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_shapes_and_gradients_for_training(tiny: CLIPCropping) -> None:
    tiny.train()
    try:
        x = torch.randn(2, 3, 64, 64)
        fmap = tiny.features(x)
        boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [8.0, 8.0, 56.0, 60.0]]), torch.tensor([[4.0, 0.0, 60.0, 50.0]])]
        scores = tiny.score_crops(fmap, boxes)
        assert [s.shape for s in scores] == [(2,), (1,)]
        vis = tiny.knowledge_embeddings(fmap, "aesthetic")
        text = tiny.text_embeddings("aesthetic", vis)
        assert vis.shape == (2, 32) and text.shape == (2, 5, 32)
        logits = tiny.logit_scale.exp() * torch.einsum("bd,bed->be", vis, text)
        loss = F.cross_entropy(logits, torch.tensor([0, 3])) + sum(s.sum() for s in scores)
        loss.backward()
        for name, param in [("head", tiny.head[0].weight), ("reduce", tiny.reduce.weight), ("ctx", tiny.ake_learner.ctx),
                            ("meta", tiny.ake_learner.meta_net[0].weight), ("ake", tiny.ake.mlp[2].weight), ("ake_pool", tiny.ake.pool.v_proj.weight),
                            ("trunk", tiny.clip.visual.layer4[0].conv1.weight)]:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    finally:
        tiny.zero_grad(set_to_none=True)
        tiny.eval()


def test_one_trunk_pass_per_image_whatever_the_candidates(tiny: CLIPCropping, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    trunk = network.trunk_features  # inference runs the folded trunk, not the modules: count the passes themselves

    def counted(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        out = trunk(visual, images)
        seen.append(out.shape[0])
        return out

    monkeypatch.setattr(network, "trunk_features", counted)
    images = [_loaded(96, 64, 1), _loaded(64, 96, 2), _loaded(80, 80, 3)]
    cands = [generate_candidates(im.info.width, im.info.height) for im in images]
    groups = group_inputs(images, cands, tiny.config, torch.device("cpu"))
    with torch.no_grad():
        for g in groups:
            fmap = tiny.features(g.images)
            tiny.score_crops(fmap, g.boxes)
            tiny.element_scores(fmap, g.boxes)
    assert sum(len(c) for c in cands) > 200
    assert seen == [3]  # square mode: one forward for the whole batch, one row per image


def test_element_scores_are_eq24_cosines(tiny: CLIPCropping) -> None:
    x = torch.randn(1, 3, 64, 64)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [10.0, 5.0, 60.0, 50.0], [0.0, 20.0, 40.0, 64.0]])]
    with torch.no_grad():
        fmap = tiny.features(x)
        el = tiny.element_scores(fmap, boxes)[0]
        comp = tiny.knowledge_embeddings(fmap, "composition", boxes)[0]
        aes = tiny.knowledge_embeddings(fmap, "aesthetic", boxes)[0]
    assert el.shape == (3, 10)
    el = el / tiny.logit_scale.detach().exp()  # reported on CLIP's logit scale
    for k in range(5):
        had = (comp * tiny.cke_text[k]).sum(dim=1)  # sum of the Hadamard product (eq. 24)
        torch.testing.assert_close(el[:, k], had)
        torch.testing.assert_close(el[:, 5 + k], (aes * tiny.ake_text[k]).sum(dim=1))
    assert float(comp.norm(dim=1).sub(1).abs().max()) < 1e-5
    assert float(tiny.cke_text.norm(dim=1).sub(1).abs().max()) < 1e-5
    # the three largest changes against the full frame (row 0) are the crop's explanation
    changes = (el[1] - el[0]).numpy()
    top3 = np.argsort(-np.abs(changes))[:3]
    assert np.all(np.abs(changes[top3]).min() >= np.delete(np.abs(changes), top3).max())


def test_text_cache_follows_reference(tiny: CLIPCropping) -> None:
    before = tiny.cke_text.clone()
    tiny.refresh_text_cache({"composition": torch.randn(32)})
    assert not torch.allclose(before, tiny.cke_text)
    tiny.refresh_text_cache()
    torch.testing.assert_close(tiny.cke_text, before)


def test_aspect_mode_sizes_and_groups(tiny: CLIPCropping) -> None:
    cfg = tiny_config(input_mode="aspect")
    assert input_size(300, 200, cfg) == (96, 64)
    assert input_size(200, 300, cfg) == (64, 96)
    assert input_size(1000, 100, cfg) == (128, 64)  # long side capped at max_aspect
    images = [_loaded(96, 64, 1), _loaded(90, 60, 2), _loaded(64, 96, 3)]
    cands = [generate_candidates(im.info.width, im.info.height) for im in images]
    groups = group_inputs(images, cands, cfg, torch.device("cpu"))
    assert sorted(len(g.indices) for g in groups) == [1, 2]
    model = CLIPCropping(cfg, tiny.clip)
    model.eval()
    model.refresh_text_cache()
    with torch.no_grad():
        for g in groups:
            fmap = model.features(g.images)
            out = model.score_crops(fmap, g.boxes)
            assert [o.shape[0] for o in out] == [b.shape[0] for b in g.boxes]
            assert all(e.shape[1] == 10 for e in model.element_scores(fmap, g.boxes))


@pytest.mark.slow
def test_real_rn50_shapes_random_weights() -> None:
    """The real RN50 tower (random weights, shapes only): 7x7x2048 map, 1024-d joint space."""
    torch.manual_seed(0)
    start = time.perf_counter()
    model = build_model(ModelConfig())
    x = torch.randn(1, 3, 224, 224)
    boxes = [torch.tensor([[0.0, 0.0, 224.0, 224.0], [20.0, 10.0, 200.0, 220.0]])]
    with torch.no_grad():
        fmap = model.features(x)
        assert fmap.shape == (1, 2048, 7, 7)
        assert model.score_crops(fmap, boxes)[0].shape == (2,)
        assert model.element_scores(fmap, boxes)[0].shape == (2, 10)
    assert model.cke_text.shape == (5, 1024) and model.pool_size == 7
    assert time.perf_counter() - start < 60


def test_prompt_learner_at_init_is_clips_text_encoder(tiny: CLIPCropping) -> None:
    """Context initialised from "a photo of a", no meta bias: exactly CLIP's text embedding of the words."""
    import dataclasses

    from clipcrop_plugin.elements import COMPOSITION_ELEMENTS
    from clipcrop_plugin.model.knowledge import encode_texts

    model = CLIPCropping(dataclasses.replace(tiny.config, n_ctx=4, ctx_init="a photo of a"), tiny.clip)
    with torch.no_grad():
        got = model.text_embeddings("composition")
    groups = [[f"a photo of a {p}." for p in e.prompts] for e in COMPOSITION_ELEMENTS]
    torch.testing.assert_close(got, encode_texts(tiny.clip, groups), atol=1e-5, rtol=1e-5)


def test_inference_head_path_equals_the_direct_one(tiny: CLIPCropping) -> None:
    """At inference the head's first layer is pushed through RoDAlign's pooling (no per-crop RoD
    maps); scores must equal the direct RoI+RoD -> MLP path, and follow a weight change."""
    import copy

    tiny = copy.deepcopy(tiny)  # the module-wide fixture stays as it was
    torch.manual_seed(1)
    with torch.no_grad():
        for p in list(tiny.head.parameters()) + list(tiny.reduce.parameters()):
            p.normal_(0, 0.1)
    cands = [generate_candidates(300, 200), generate_candidates(200, 300), generate_candidates(64, 64)]
    boxes = [torch.from_numpy(c.boxes.astype(np.float32) * np.asarray([64 / c.width, 64 / c.height] * 2, np.float32))
             for c in cands]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        fmap = tiny.features(x)
        fast = tiny.score_crops(fmap, boxes)
    with torch.enable_grad():
        direct = tiny.score_crops(fmap, boxes)
    for f, d in zip(fast, direct):
        torch.testing.assert_close(f, d.detach(), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        tiny.head[0].weight.mul_(-1.0)  # in place: the cached RoD weights must be rebuilt
        flipped = tiny.score_crops(fmap, boxes)
    with torch.enable_grad():
        direct2 = tiny.score_crops(fmap, boxes)
    for f, d in zip(flipped, direct2):
        torch.testing.assert_close(f, d.detach(), atol=1e-5, rtol=1e-4)
