"""The zeroshot and clipcropping scorers through the registry, on real image files."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.config import Settings
from clipcrop_plugin.elements import ELEMENT_NAMES
from clipcrop_plugin.errors import WeightsError
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.model import ModelConfig, build_model, save_checkpoint
from clipcrop_plugin.model.checkpoints import import_checkpoint
from clipcrop_plugin.model.testing import tiny_clip_config, tiny_config, write_clip_weights
from clipcrop_plugin.model.weights import load_state_file, sha256_file
from clipcrop_plugin.scoring.registry import load_scorer

TOWER = "tinyrn-test"


@pytest.fixture(scope="module")
def tower(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Register a tiny ResNet CLIP config with open_clip, as a user could register their own."""
    import open_clip

    folder = tmp_path_factory.mktemp("oc")
    (folder / f"{TOWER}.json").write_text(json.dumps(tiny_clip_config()))
    open_clip.add_model_config(folder / f"{TOWER}.json")
    return TOWER


@pytest.fixture()
def settings(tmp_path: Path, tower: str) -> Settings:
    return Settings(model_dir=str(tmp_path / "models"), clip_model=tower, clip_pretrained="openai")


@pytest.fixture()
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    out = []
    for i, (w, h) in enumerate([(360, 240), (200, 300)]):
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        arr[h // 3: h // 2, w // 3: w // 2] = 255
        path = tmp_path / f"p{i}.jpg"
        Image.fromarray(arr).save(path, quality=90)
        out.append(path)
    return out


def _clip_weights(settings: Settings) -> Path:
    cfg = tiny_config(clip_model=settings.clip_model)
    return write_clip_weights(settings.resolved_model_dir() / f"{settings.clip_model}-openai.safetensors", cfg)


# What a stage-3 run from pretrained weights records (the tiny tower stands in for RN50 here).
TRAINED = {"stage": "cropping", "lineage": ["composition", "aesthetic", "cropping"], "trunk": "pretrained"}


def _checkpoint(settings: Settings, tmp_path: Path, name: str = "trained", **provenance: object) -> Path:
    cfg = tiny_config()
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg)))
    return save_checkpoint(model, tmp_path / "export" / name, provenance={**TRAINED, **provenance}).path


def _score(scorer, photos):  # noqa: ANN001, ANN202
    loaded = [load_image(p, min_side=scorer.min_side) for p in photos]
    cands = [generate_candidates(im.info.width, im.info.height, [parse_aspect("1:1")]) for im in loaded]
    return loaded, cands, scorer.score(loaded, cands)


def _trunk_passes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Record the output shape of every trunk pass (module hooks would miss the folded CPU trunk)."""
    from clipcrop_plugin.model import network

    calls: list[tuple[int, ...]] = []
    trunk = network.trunk_features

    def counted(visual: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        out = trunk(visual, images)
        calls.append(tuple(out.shape))
        return out

    monkeypatch.setattr(network, "trunk_features", counted)
    return calls


def test_zeroshot_scores_every_candidate_with_one_trunk_pass(settings: Settings, photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    weights = _clip_weights(settings)
    scorer = load_scorer("zeroshot", settings=settings, device="cpu")
    assert scorer.name == "zeroshot" and scorer.device == "cpu" and scorer.weights_hash == sha256_file(weights)
    calls = _trunk_passes(monkeypatch)
    loaded, cands, results = _score(scorer, photos)
    assert [c[0] for c in calls] == [2]  # both photos in one forward (square input), whatever the candidate count
    for cand, res in zip(cands, results):
        assert res.scores.shape == (len(cand),) and res.elements.shape == (len(cand), len(ELEMENT_NAMES))
        assert np.isfinite(res.scores).all() and np.ptp(res.scores) > 0
        assert np.abs(res.elements).max() <= scorer.scale * (1.0 + 1e-5)  # cosines times the logit scale


def test_zeroshot_full_frame_is_clips_image_embedding(settings: Settings, photos: list[Path]) -> None:
    _clip_weights(settings)
    scorer = load_scorer("zeroshot", settings=settings, device="cpu")
    loaded, cands, _ = _score(scorer, photos[:1])
    emb = scorer.embed_crops(loaded, cands)[0][cands[0].full_index]
    from clipcrop_plugin.model.network import image_tensor

    x = image_tensor(loaded[0].image, (64, 64), scorer.config)[None]
    with torch.no_grad():
        ref = F.normalize(scorer.clip.encode_image(x), dim=-1)[0]
    torch.testing.assert_close(emb, ref, atol=1e-4, rtol=1e-4)


def test_clipcropping_from_imported_checkpoint(settings: Settings, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = import_checkpoint(_checkpoint(settings, tmp_path), settings.resolved_model_dir())
    scorer = load_scorer("clipcropping", settings=settings, device="cpu")
    assert scorer.weights_hash == info.sha256
    calls = _trunk_passes(monkeypatch)
    _, cands, results = _score(scorer, photos)
    assert [c[0] for c in calls] == [2]
    for cand, res in zip(cands, results):
        assert res.scores.shape == (len(cand),) and res.elements.shape == (len(cand), 10)
    # --weights with the checkpoint file works too, and gives the same numbers
    again = load_scorer("clipcropping", settings=Settings(model_dir=str(tmp_path / "empty")), device="cpu",
                        weights=str(info.path))
    np.testing.assert_allclose(_score(again, photos)[2][0].scores, results[0].scores, rtol=1e-5, atol=1e-6)


def test_clipcropping_without_checkpoint_is_a_clear_error(settings: Settings) -> None:
    with pytest.raises(WeightsError, match="no trained clipcropping checkpoint is active"):
        load_scorer("clipcropping", settings=settings, device="cpu")
    plain = _clip_weights(settings)
    with pytest.raises(WeightsError, match="not a clipcrop checkpoint"):
        load_scorer("clipcropping", settings=settings, device="cpu", weights=str(plain))


def test_zeroshot_without_weights_fails_fast_and_says_how(settings: Settings) -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsError, match="--weights PATH") as exc:
        load_scorer("zeroshot", settings=Settings(model_dir=settings.model_dir), device="cpu")
    assert time.perf_counter() - start < 10 and "\n" not in str(exc.value)


def test_auto_never_picks_random_weights(settings: Settings, tmp_path: Path) -> None:
    # Our own handler on the "clipcrop" logger: caplog's capture depends on propagation, which
    # the CLI's logging set-up (run earlier in the same process) turns off.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("clipcrop")
    logger.addHandler(handler)
    try:
        assert load_scorer("auto", settings=settings, device="cpu").name == "heuristic"
    finally:
        logger.removeHandler(handler)
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "weights" in warnings[0].getMessage()
    _clip_weights(settings)
    assert load_scorer("auto", settings=settings, device="cpu").name == "zeroshot"
    import_checkpoint(_checkpoint(settings, tmp_path), settings.resolved_model_dir())
    assert load_scorer("auto", settings=settings, device="cpu").name == "clipcropping"


def test_explicit_weights_for_zeroshot_can_be_a_checkpoint(settings: Settings, photos: list[Path], tmp_path: Path) -> None:
    ckpt = _checkpoint(settings, tmp_path)
    scorer = load_scorer("zeroshot", settings=settings, device="cpu", weights=str(ckpt))
    assert scorer.weights_hash == sha256_file(ckpt)
    assert _score(scorer, photos[:1])[2][0].scores.shape[0] > 10


def test_models_cli_lists_and_imports(settings: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from clipcrop_plugin.cli.main import cli

    env = {"CLIPCROP_MODEL_DIR": settings.model_dir}
    Path(os.environ["CLIPCROP_CONFIG"]).write_text(f'clip_model = "{settings.clip_model}"\n')
    runner = CliRunner()
    out = runner.invoke(cli, ["models", "--json"], env=env)
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)["scorers"]}
    assert not rows["clipcropping"]["ready"] and not rows["zeroshot"]["ready"] and rows["heuristic"]["ready"]
    ckpt = _checkpoint(settings, tmp_path)
    out = runner.invoke(cli, ["models", "import", str(ckpt)], env=env)
    assert out.exit_code == 0 and "imported trained" in out.output and "now uses trained" in out.output
    out = runner.invoke(cli, ["models"], env=env)
    assert "clipcropping  ready" in out.output and "checkpoint * trained" in out.output
    out = runner.invoke(cli, ["models", "use", "trained"], env=env)
    assert out.exit_code == 0 and "now uses trained" in out.output
    out = runner.invoke(cli, ["models", "use", "nope"], env=env)
    assert out.exit_code == 1 and out.output.startswith("error: checkpoint not found")
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"not a checkpoint")
    out = runner.invoke(cli, ["models", "import", str(bad)], env=env)
    assert out.exit_code == 1 and out.output.startswith("error: ") and "Traceback" not in out.output


def test_suggest_cli_with_zeroshot_explains_crops(settings: Settings, photos: list[Path]) -> None:
    from click.testing import CliRunner

    from clipcrop_plugin.cli.main import cli

    _clip_weights(settings)
    Path(os.environ["CLIPCROP_CONFIG"]).write_text(f'clip_model = "{settings.clip_model}"\n')
    out = CliRunner().invoke(cli, ["suggest", str(photos[0]), "--scorer", "zeroshot", "--device", "cpu", "--json"],
                             env={"CLIPCROP_MODEL_DIR": settings.model_dir})
    assert out.exit_code == 0, out.output
    row = json.loads(out.output.strip().splitlines()[0])
    assert row["scorer"] == "zeroshot" and row["ok"] and row["crops"]
    best = row["crops"][0]
    assert len(best["explanation"]) == 3 and all(c["element"] in ELEMENT_NAMES for c in best["explanation"])


def test_clipcropping_in_aspect_mode(settings: Settings, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An aspect-preserving checkpoint groups photos by input size, one trunk pass per group."""
    cfg = tiny_config(input_mode="aspect")
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg)))
    ckpt = save_checkpoint(model, tmp_path / "aspect", provenance=TRAINED).path
    scorer = load_scorer("clipcropping", settings=settings, device="cpu", weights=str(ckpt))
    calls = _trunk_passes(monkeypatch)
    _, cands, results = _score(scorer, photos)  # one landscape, one portrait photo
    assert sorted(calls) == sorted([(1, 256, 2, 3), (1, 256, 3, 2)])
    assert [r.scores.shape[0] for r in results] == [len(c) for c in cands]


def test_only_trained_heads_score_photos(settings: Settings, tmp_path: Path) -> None:
    """A stage-1/2 checkpoint or one from a random trunk is imported but marked, never pinned or used."""
    from clipcrop_plugin.model.checkpoints import UnfitCheckpoint, import_and_pin, read_checkpoint_info, set_active

    model_dir = settings.resolved_model_dir()
    stage1 = _checkpoint(settings, tmp_path, "s1", stage="composition", lineage=["composition"])
    random3 = _checkpoint(settings, tmp_path, "r3", trunk="random")
    for path, why in ((stage1, "never trained"), (random3, "random trunk")):
        res = import_and_pin(path, model_dir)
        assert res.refusal and why in res.refusal and not res.activated
        copied = json.loads(res.info.sidecar.read_text())
        assert copied["import"]["can_score"] is False and why in copied["import"]["why_not"]
        with pytest.raises(WeightsError, match="cannot score photos"):
            set_active(model_dir, res.info.name)
        with pytest.raises(UnfitCheckpoint, match=why):
            load_scorer("clipcropping", settings=settings, device="cpu", weights=str(path))
    # No pin: nothing is active, whatever is newest.
    with pytest.raises(WeightsError, match="is active"):
        load_scorer("clipcropping", settings=settings, device="cpu")
    good = import_and_pin(_checkpoint(settings, tmp_path, "good"), model_dir)
    assert good.activated and good.refusal is None
    # A personalization of the good one inherits its lineage and trunk through the parent file.
    model = build_model(tiny_config())
    child = save_checkpoint(model, model_dir / "checkpoints" / "personal-1",
                            provenance={"stage": "personalize", "parent": str(good.info.path)},
                            parent_sha256=good.info.sha256)
    info = read_checkpoint_info(child.path)
    assert info.lineage == ["composition", "aesthetic", "cropping", "personalize"] and info.trunk == "pretrained"
    assert load_scorer("clipcropping", settings=settings, device="cpu").weights_hash == good.info.sha256  # not newest
    assert info.can_score


def test_models_use_lists_lineages(settings: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from clipcrop_plugin.cli.main import cli
    from clipcrop_plugin.model.checkpoints import import_and_pin

    model_dir = settings.resolved_model_dir()
    good = import_and_pin(_checkpoint(settings, tmp_path, "base"), model_dir).info
    save_checkpoint(build_model(tiny_config()), model_dir / "checkpoints" / "mine",
                    provenance={"stage": "personalize", "parent": str(good.path)}, parent_sha256=good.sha256)
    env = {"CLIPCROP_MODEL_DIR": str(model_dir)}
    out = CliRunner().invoke(cli, ["models", "use"], env=env)
    assert out.exit_code == 0 and out.output.strip() == "*base -> mine"
    out = CliRunner().invoke(cli, ["models", "use", "mine"], env=env)
    assert out.exit_code == 0 and "now uses mine" in out.output
    assert CliRunner().invoke(cli, ["models", "use"], env=env).output.strip() == "base -> *mine"


def test_models_does_not_call_broken_zeroshot_weights_ready(settings: Settings) -> None:
    """`clipcrop models` and `auto` agree: a weights file that cannot be loaded is not ready."""
    from click.testing import CliRunner

    from clipcrop_plugin.cli.main import cli

    bad = settings.resolved_model_dir() / f"{settings.clip_model}-openai.safetensors"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    Path(os.environ["CLIPCROP_CONFIG"]).write_text(f'clip_model = "{settings.clip_model}"\n')
    env = {"CLIPCROP_MODEL_DIR": settings.model_dir}
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"], env=env).output)["scorers"]}
    assert not rows["zeroshot"]["ready"] and "corrupt" in rows["zeroshot"]["detail"]
    assert load_scorer("auto", settings=settings, device="cpu").name == "heuristic"
    # a state dict of another tower: also not ready
    other = tiny_config(clip_config=tiny_clip_config(width=16))
    write_clip_weights(bad, other)
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"], env=env).output)["scorers"]}
    assert not rows["zeroshot"]["ready"] and "do not fit" in rows["zeroshot"]["detail"]
    assert load_scorer("auto", settings=settings, device="cpu").name == "heuristic"
    write_clip_weights(bad, tiny_config(clip_model=settings.clip_model))
    rows = {r["name"]: r for r in json.loads(CliRunner().invoke(cli, ["models", "--json"], env=env).output)["scorers"]}
    assert rows["zeroshot"]["ready"]
    assert load_scorer("auto", settings=settings, device="cpu").name == "zeroshot"


def test_zeroshot_rescore_reorders_only_the_top_crops_from_their_own_pixels(settings: Settings, photos: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _clip_weights(settings)
    plain = load_scorer("zeroshot", settings=settings, device="cpu")
    settings.zeroshot_rescore = 4
    again = load_scorer("zeroshot", settings=settings, device="cpu")
    assert again.rescore == 4
    loaded, cands, base = _score(plain, photos)
    calls = _trunk_passes(monkeypatch)
    results = again.score(loaded, cands)
    assert len(calls) == 1 + 4 * len(photos)  # one pass for all, then one per re-scored crop
    from clipcrop_plugin.model.network import input_size

    aspect = ModelConfig(**{**again.config.to_dict(), "input_mode": "aspect"})
    expected = []
    for cand, b in zip(cands, base):
        for i in np.argsort(-b.scores, kind="stable")[:4]:
            x1, y1, x2, y2 = cand.boxes[i]
            w, h = input_size(int(round(x2 - x1)), int(round(y2 - y1)), aspect)  # working image == full size here
            expected.append((h // 32, w // 32))
    assert [s[2:] for s in calls[1:]] == expected  # each at its own aspect, not squeezed square
    for cand, b, r, im in zip(cands, base, results, loaded):
        top = np.argsort(-b.scores, kind="stable")[:4]
        rest = np.setdiff1d(np.arange(len(b.scores)), top)
        np.testing.assert_array_equal(r.scores[rest], b.scores[rest])  # the rest of the ranking is untouched
        np.testing.assert_array_equal(np.sort(r.scores[top]), np.sort(b.scores[top]))  # same values, maybe reordered
        own = torch.stack(again.embed_own_pixels(im, cand, top.tolist()))
        fresh = (again.scale * (own @ again.quality.t())).numpy()
        fresh = fresh[:, 0] - fresh[:, 1]
        assert list(top[np.argsort(-fresh, kind="stable")]) == list(np.argsort(-r.scores, kind="stable")[:4])
        np.testing.assert_allclose(r.elements[top], (again.scale * (own @ again.element_text.t())).numpy(), rtol=1e-5)
