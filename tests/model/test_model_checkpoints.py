"""Checkpoints (safetensors + sidecar, sha256) and CLIP weight files (never unpickling code)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from clipcrop_plugin.errors import WeightsError
from clipcrop_plugin.model import build_model, load_checkpoint, save_checkpoint
from clipcrop_plugin.model.checkpoints import (
    active_checkpoint,
    import_checkpoint,
    is_checkpoint,
    list_checkpoints,
    read_checkpoint_info,
    set_active,
)
from clipcrop_plugin.model.network import create_clip, load_clip_into
from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
from clipcrop_plugin.model.weights import find_clip_weights, load_clip_state, load_state_file


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny_config()
    base = tmp_path_factory.mktemp("ck")
    model = build_model(cfg, load_state_file(write_clip_weights(base / "clip.safetensors", cfg)))
    with torch.no_grad():
        model.head[-1].bias.fill_(0.25)  # stands in for training
    info = save_checkpoint(model, base / "run1", provenance={"stage": "cropping", "epochs": 1, "lineage": ["cropping"],
                                                          "trunk": "pretrained"}, parent_sha256="ab" * 32)
    return info.path


def test_round_trip_gives_identical_scores(saved: Path) -> None:
    info = read_checkpoint_info(saved)
    assert info.provenance == {"stage": "cropping", "epochs": 1, "lineage": ["cropping"], "trunk": "pretrained"} and info.parent_sha256 == "ab" * 32
    side = json.loads(saved.with_suffix(".json").read_text())
    assert side["prompts"]["composition"][0][0] == "a photo with center composition"
    assert side["element_names"][0] == "center" and side["config"]["clip_model"] == "tiny-rn"
    a, _ = load_checkpoint(saved)
    b, _ = load_checkpoint(saved)
    x = torch.randn(1, 3, 64, 64)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [5.0, 5.0, 50.0, 60.0]])]
    with torch.no_grad():
        fa, fb = a.features(x), b.features(x)
        torch.testing.assert_close(a.score_crops(fa, boxes)[0], b.score_crops(fb, boxes)[0])
        torch.testing.assert_close(a.element_scores(fa, boxes)[0], b.element_scores(fb, boxes)[0])
    assert bool(a.text_ready) and a.head[-1].bias.item() == pytest.approx(0.25)


def test_sha256_mismatch_is_refused(saved: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bad.safetensors"
    data = bytearray(saved.read_bytes())
    data[-1] ^= 0x01  # one flipped bit in the tensor data
    copy.write_bytes(bytes(data))
    copy.with_suffix(".json").write_text(saved.with_suffix(".json").read_text())
    with pytest.raises(WeightsError, match="does not match its sidecar sha256") as exc:
        load_checkpoint(copy)
    assert "\n" not in str(exc.value)


def test_import_copies_and_activates(saved: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    info = import_checkpoint(saved, model_dir)
    assert info.path == model_dir / "checkpoints" / saved.name and info.sidecar.is_file()
    assert active_checkpoint(model_dir).sha256 == info.sha256
    assert import_checkpoint(saved, model_dir).sha256 == info.sha256  # idempotent
    assert [i.name for i in list_checkpoints(model_dir)] == [saved.stem]
    assert set_active(model_dir, saved.stem).name == saved.stem


def test_import_refuses_a_different_file_of_the_same_name(saved: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    import_checkpoint(saved, model_dir)
    other_dir = tmp_path / "other"
    model, _ = load_checkpoint(saved)
    with torch.no_grad():
        model.head[-1].bias.fill_(-1.0)
    save_checkpoint(model, other_dir / saved.stem)
    with pytest.raises(WeightsError, match="already in"):
        import_checkpoint(other_dir / saved.name, model_dir)


def test_import_refuses_tensors_that_do_not_fit_the_config(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from clipcrop_plugin.model.weights import sha256_file

    state = load_file(str(saved))
    state["head.0.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "shapes.safetensors"
    save_file(state, str(bad), metadata={"format": "clipcrop-checkpoint"})
    side = json.loads(saved.with_suffix(".json").read_text())
    side["sha256"] = sha256_file(bad)
    bad.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(WeightsError, match="does not fit its config"):
        import_checkpoint(bad, tmp_path / "models")


def test_is_checkpoint(saved: Path, tmp_path: Path) -> None:
    plain = write_clip_weights(tmp_path / "clip.safetensors", tiny_config())
    assert is_checkpoint(saved) and not is_checkpoint(plain)


def test_torch_state_dict_loads_with_weights_only(tmp_path: Path) -> None:
    cfg = tiny_config()
    pt = write_clip_weights(tmp_path / "clip.pt", cfg)
    clip = create_clip(cfg)
    load_clip_into(clip, load_state_file(pt))
    ref = load_state_file(write_clip_weights(tmp_path / "clip.safetensors", cfg))
    torch.testing.assert_close(clip.state_dict()["visual.conv1.weight"], ref["visual.conv1.weight"])


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does
        return (os.system, ("touch /tmp/clipcrop_pwned_by_test",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"x": _Evil()}, fh, protocol=2)
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        load_state_file(path)
    assert not Path("/tmp/clipcrop_pwned_by_test").exists()


def test_weights_for_a_different_tower_are_refused(tmp_path: Path) -> None:
    small = write_clip_weights(tmp_path / "a.safetensors", tiny_config())
    other = tiny_config()
    other.clip_config["vision_cfg"]["width"] = 16
    with pytest.raises(WeightsError, match="do not fit"):
        load_clip_into(create_clip(other), load_state_file(small))


def test_weight_discovery_order(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsError, match="no RN50 \\(openai\\) CLIP weights found"):
        find_clip_weights(model_dir, "RN50", "openai")
    model_dir.mkdir()
    hf = model_dir / "RN50" / "open_clip_model.safetensors"
    hf.parent.mkdir()
    write_clip_weights(hf, tiny_config())
    assert find_clip_weights(model_dir, "RN50", "openai").path == hf
    named = write_clip_weights(model_dir / "RN50-openai.safetensors", tiny_config())
    assert find_clip_weights(model_dir, "RN50", "openai").path == named
    explicit = write_clip_weights(tmp_path / "mine.pt", tiny_config())
    where = find_clip_weights(model_dir, "RN50", "openai", explicit)
    assert (where.path, where.source) == (explicit, "explicit")
    with pytest.raises(WeightsError, match="not found"):
        find_clip_weights(model_dir, "RN50", "openai", tmp_path / "nope.pt")
    state, where, digest = load_clip_state(model_dir, "RN50", "openai")
    assert where.source == "model_dir" and len(digest) == 64 and "visual.conv1.weight" in state


def test_loaded_model_matches_the_saved_one(tmp_path: Path) -> None:
    cfg = tiny_config()
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "clip.safetensors", cfg)))
    model.refresh_text_cache({"aesthetic": torch.randn(32)})
    info = save_checkpoint(model, tmp_path / "m")
    x = torch.randn(2, 3, 64, 64)
    boxes = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [3.0, 9.0, 50.0, 61.0]]), torch.tensor([[8.0, 0.0, 64.0, 40.0]])]
    with torch.no_grad():
        f = model.features(x)
        ref_s, ref_e = model.score_crops(f, boxes), model.element_scores(f, boxes)
        for text_tower in (True, False):
            loaded, _ = load_checkpoint(info.path, text_tower=text_tower)
            assert (loaded.clip.transformer is not None) == text_tower
            g = loaded.features(x)
            for a, b in zip(loaded.score_crops(g, boxes), ref_s):
                torch.testing.assert_close(a, b)
            for a, b in zip(loaded.element_scores(g, boxes), ref_e):
                torch.testing.assert_close(a, b)
        full, _ = load_checkpoint(info.path)
        torch.testing.assert_close(full.text_embeddings("aesthetic"), model.text_embeddings("aesthetic"))


def test_open_clip_hf_cache_is_the_last_resort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file open_clip downloaded earlier (Hugging Face cache layout) is found without any network."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    repo = cache / "models--timm--resnet50_clip.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snap = repo / "snapshots" / "0123abcd" / "open_clip_model.safetensors"
    write_clip_weights(snap, tiny_config())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    where = find_clip_weights(tmp_path / "empty-models", "RN50", "openai")
    assert where.source == "open_clip_cache" and where.path.resolve() == snap.resolve()
    # the model folder still wins over the cache
    mine = write_clip_weights(tmp_path / "empty-models" / "RN50-openai.safetensors", tiny_config())
    assert find_clip_weights(tmp_path / "empty-models", "RN50", "openai").path == mine
