"""Personalization on a real SQLite store: synthetic preferences the model cannot know beforehand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipcrop_plugin.model import read_checkpoint_info, save_checkpoint
from clipcrop_plugin.store import Store
from trainer import modeling
from trainer.cli import cli
from trainer.personalize import MIN_LABELS, NotEnoughLabels, PersonalizeSettings, personalize
from trainer.synthetic import gaic_grid, render_subject_image


def _photos(folder: Path, n: int, seed: int = 0) -> list[tuple[Path, float, float, float]]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        image, cx, cy, r = render_subject_image(rng, 160, 120)
        path = folder / f"p{i:03d}.jpg"
        image.save(path, quality=92)
        out.append((path, cx, cy, r))
    return out


def _taste_pairs(w: int, h: int, cx: float, cy: float, r: float, k: int) -> list[tuple[list[int], list[int]]]:
    """This user likes the subject LEFT of centre: of two crops that keep the subject whole, the
    one where it sits further left (by more than 0.1 of the crop width) is preferred."""
    boxes, valid = gaic_grid(w, h)
    boxes = boxes[valid]
    inside = (boxes[:, 0] <= cx - r) & (boxes[:, 2] >= cx + r) & (boxes[:, 1] <= cy - r) & (boxes[:, 3] >= cy + r)
    boxes = boxes[inside]
    rel = (cx - boxes[:, 0]) / (boxes[:, 2] - boxes[:, 0])
    order = np.argsort(rel, kind="stable")
    pairs = []
    for i in range(min(k, len(order) // 2)):
        a, b = order[i], order[-1 - i]
        if rel[b] - rel[a] > 0.1:
            pairs.append((boxes[a].astype(int).tolist(), boxes[b].astype(int).tolist()))
    return pairs


@pytest.fixture()
def labelled_store(tmp_path: Path) -> tuple[Store, list[Path]]:
    store = Store.open(f"sqlite:///{tmp_path / 'lib.sqlite3'}")
    photos = _photos(tmp_path / "photos", 24)
    for path, cx, cy, r in photos:
        store.record_pending(str(path))
        for better, worse in _taste_pairs(160, 120, cx, cy, r, 2):
            store.add_label(str(path), "prefer", box=tuple(better), other=tuple(worse))
    yield store, [p for p, *_ in photos]
    store.close()


def _base_checkpoint(tmp_path: Path, photos: list[Path]) -> Path:
    torch.manual_seed(0)
    model = modeling.new_model(modeling.tiny_config(128))
    prepared = [modeling.prepare_image(model, p) for p in photos]
    modeling.calibrate_batchnorm(model, prepared, torch.device("cpu"))
    # A head with no opinion yet: every crop scores the same, so agreement starts at exactly 50%
    # (ties count half) instead of at whatever bias a random head happens to have.
    with torch.no_grad():
        model.head[-1].weight.zero_()
    return save_checkpoint(model, tmp_path / "base" / "base.safetensors", provenance={"stage": "test"}).path


def test_personalization_learns_held_out_preferences_and_registers_a_version(
        labelled_store: tuple[Store, list[Path]], tmp_path: Path) -> None:
    store, photos = labelled_store
    assert len(store.labels()) >= MIN_LABELS
    base = _base_checkpoint(tmp_path, photos)
    s = PersonalizeSettings(checkpoint=base, out=tmp_path / "personal.safetensors", epochs=25, lr=3e-3,
                            device="cpu", activate=True, model_dir=tmp_path / "models", seed=0)
    result = personalize(s, progress=False, store=store)
    assert result.agreement_before == pytest.approx(0.5)
    assert result.agreement_after > 0.8, (result.agreement_before, result.agreement_after)
    info = read_checkpoint_info(result.checkpoint)
    assert info.parent_sha256 == read_checkpoint_info(base).sha256
    assert info.provenance["metrics"]["heldout_agreement_after"] == pytest.approx(result.agreement_after)
    versions = {v.id: v for v in store.model_versions()}
    new = versions[result.version_id]
    assert new.parent_id is not None and versions[new.parent_id].sha256 == info.parent_sha256
    # A head whose lineage has no trained cropping stage, written outside the model folder, is
    # registered but activated neither in the model folder nor in the database (they agree).
    assert not result.activated and "cannot score" in result.refused
    assert not new.active and store.active_model_version() is None
    assert "held-out agreement" in result.summary()


def test_too_few_labels_says_how_many_more(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'few.sqlite3'}"
    photos = _photos(tmp_path / "photos", 2)
    with Store.open(db) as store:
        for path, cx, cy, r in photos:
            store.record_pending(str(path))
            for better, worse in _taste_pairs(160, 120, cx, cy, r, 2):
                store.add_label(str(path), "prefer", box=tuple(better), other=tuple(worse))
        n = len(store.labels())
        with pytest.raises(NotEnoughLabels, match=f"label {MIN_LABELS - n} more"):
            personalize(PersonalizeSettings(device="cpu"), progress=False, store=store)
    res = CliRunner().invoke(cli, ["personalize", "--db", db, "--device", "cpu"])
    assert res.exit_code == 1 and res.output.startswith(f"error: personalization needs at least {MIN_LABELS} labels")
