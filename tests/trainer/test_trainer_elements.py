"""Stages 1-2 lift element accuracy above chance on synthetic composition / aesthetic labels."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from clipcrop_plugin.model import save_checkpoint
from trainer import modeling, synthetic
from trainer.data import load_element_dataset
from trainer.stages import StageSettings, run_stage


def _pretrained_stand_in(tmp_path: Path, branch: str, data: Path) -> Path:
    """A tiny CLIP playing the pretrained one: BatchNorm statistics from the training images and
    CLIP's trained temperature (logit scale 100, random init has 14), saved as a checkpoint so the
    stage starts from it like Algorithm 1 starts from pretrained CLIP."""
    torch.manual_seed(0)
    model = modeling.new_model(modeling.tiny_config(128))
    prepared = [modeling.prepare_image(model, r.image_path) for r in load_element_dataset(branch, data).records]
    modeling.calibrate_batchnorm(model, prepared, torch.device("cpu"))
    with torch.no_grad():
        model.clip.logit_scale.fill_(math.log(100.0))
    return save_checkpoint(model, tmp_path / "base" / "base.safetensors", provenance={"stage": "test"}).path


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "lr", "epochs"), [("composition", 1e-3, 30), ("aesthetic", 3e-4, 40)])
def test_knowledge_stage_beats_chance_on_held_out_images(stage: str, lr: float, epochs: int, tmp_path: Path) -> None:
    write = synthetic.write_cadb if stage == "composition" else synthetic.write_aadb
    train = write(tmp_path / "train", n=60, seed=0)
    # A held-out set in the same form (AADB's own split files for the aesthetic stage).
    val = write(tmp_path / "val", n=40, seed=1, **({"split": "test"} if stage == "aesthetic" else {}))
    base = _pretrained_stand_in(tmp_path, stage, train)
    # One small run's result depends on the data order (and on float rounding): over seeds it
    # ranged from barely above chance to 0.9. The claim is about the stage, so it is judged on
    # the mean of three seeds, and no seed may end at or below chance.
    finals = []
    for seed in (0, 1, 2):
        s = StageSettings(stage=stage, data=train, val=val, out=tmp_path / f"run{seed}", init=base,
                          lr=lr, epochs=epochs, batch_size=5, device="cpu", seed=seed)
        finals.append(run_stage(s, progress=False).history[-1])
    pair = sum(f["val_pair"] for f in finals) / len(finals)
    top1 = sum(f["val_top1"] for f in finals) / len(finals)
    chance = finals[0]["val_top1_chance"]
    print(stage, [(round(f["val_top1"], 3), round(f["val_pair"], 3)) for f in finals], chance)
    # pair: share of (positive, negative) element pairs ordered correctly; chance is 0.5.
    assert pair > 0.65 and min(f["val_pair"] for f in finals) > 0.5, finals
    assert top1 > chance + 0.15, finals
