"""Personalizing zeroshot: a light head on its crop embeddings, on a RANDOM-INIT tiny tower.

No real CLIP weights reach the test machines, so the tower is random (saved here): zeroshot's own
ranking is noise, and whatever the head gets right it learned from the labels.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from support.personalize import loose_centre, review, scored_library

from clipcrop_plugin.api import Library
from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.config import load_settings
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.model import read_checkpoint_info, save_checkpoint
from clipcrop_plugin.scoring import learned
from clipcrop_plugin.scoring.zeroshot import ZeroShotScorer
from trainer import modeling
from trainer.personalize import PersonalizeSettings, personalize


def _random_tower(folder: Path, seed: int) -> str:
    torch.manual_seed(seed)
    model = modeling.new_model(modeling.tiny_config(128))
    return str(save_checkpoint(model, folder / f"random-{seed}.safetensors", provenance={"stage": "random (test)"}).path)


@pytest.mark.slow  # ~25 s of CPU: a tiny tower, but every candidate of 26 photos goes through it
def test_zeroshot_head_learns_from_labels_and_the_scorer_loads_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tower = _random_tower(tmp_path / "towers", 0)
    base = ZeroShotScorer.create(load_settings(), device="cpu", weights=tower)
    assert base.personal is None
    db, subjects = scored_library(tmp_path, 26, base, seed=3)
    with Library.open(db, scorer=base) as lib:
        review(lib, subjects, loose_centre, 36)
        res = personalize(PersonalizeSettings(scorer="zeroshot", weights=tower, device="cpu", activate=True),
                          progress=False, store=lib.store)
    assert res.scorer == "zeroshot"
    assert res.agreement_after > res.agreement_before + 0.1, res.summary()
    assert res.activated
    pw = learned.read_version(res.checkpoint)
    tower_sha = read_checkpoint_info(tower).sha256
    assert pw.base_weights_hash == tower_sha == res.parent_sha256
    assert pw.names[-1] == "zeroshot_score" and len(pw.w) == len(pw.names)

    personal = ZeroShotScorer.create(load_settings(), device="cpu", weights=tower)
    assert personal.personal is not None and personal.personal.sha256 == pw.sha256
    assert personal.weights_hash == pw.weights_hash != base.weights_hash == tower_sha
    # One trunk pass, as before: the head adds to zeroshot's score, computed from the same embeddings.
    path = sorted(subjects)[0]
    loaded = load_image(path, min_side=personal.min_side)
    cands = generate_candidates(loaded.info.width, loaded.info.height)
    (b,) = base.score([loaded], [cands])
    (p,) = personal.score([loaded], [cands])
    (emb,) = base.embed_crops([loaded], [cands])
    expect = b.scores + pw.adjust(learned.zeroshot_inputs(emb.numpy(), learned.crop_features(loaded, cands),
                                                          b.scores))
    assert np.allclose(p.scores, expect, atol=1e-6) and not np.allclose(p.scores, b.scores)
    assert np.allclose(p.elements, b.elements)

    # A head only means something on the tower it was trained on: another tower ignores it, loudly.
    other = _random_tower(tmp_path / "towers", 1)
    with caplog.at_level(logging.WARNING, logger="clipcrop"):
        again = ZeroShotScorer.create(load_settings(), device="cpu", weights=other)
    assert again.personal is None and again.weights_hash == read_checkpoint_info(other).sha256
    assert "trained on other zeroshot weights" in caplog.text
