"""The guard's composition weights, learned by personalization: measured through the guard
itself, stored in the version's file (its sha256 covers them), applied when the version scores,
and never able to undo the hard tiers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.photos import subject_photo

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.errors import WeightsError
from clipcrop_plugin.guard import DEFAULT_WEIGHTS, GuardWeights, guard
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.results import Subject
from clipcrop_plugin.scoring import learned
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.suggest import build_suggestion


def contains(box: tuple[int, ...] | np.ndarray, inner: tuple[int, ...]) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


@st.composite
def scenes(draw: st.DrawFn) -> tuple[int, int, tuple[int, int, int, int], np.ndarray, list[str], np.ndarray]:
    """A photo size, a face, random candidates in a few sets (+ the full frame last), random scores."""
    w, h = draw(st.integers(64, 2000)), draw(st.integers(64, 2000))
    fw, fh = draw(st.integers(4, max(4, w // 3))), draw(st.integers(4, max(4, h // 3)))
    fx, fy = draw(st.integers(0, w - fw)), draw(st.integers(0, h - fh))
    boxes, groups = [], []
    for _ in range(draw(st.integers(2, 30))):
        x1, y1 = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
        boxes.append((x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))))
        groups.append(draw(st.sampled_from(["grid", "1:1", "16:9"])))
    boxes.append((0, 0, w, h))
    groups.append("full")
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    scores = np.array(draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=len(boxes), max_size=len(boxes))))
    return w, h, (fx, fy, fx + fw, fy + fh), np.array(boxes, dtype=np.int64), groups, scores * scale


WEIGHTS = st.builds(GuardWeights, place=st.floats(-5, 50), cramp=st.floats(-5, 50), cover=st.floats(-5, 50))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes(), weights=WEIGHTS)
def test_learned_weights_never_let_a_best_crop_cut_a_face_a_candidate_keeps(scene, weights) -> None:  # type: ignore[no-untyped-def]
    w, h, face, boxes, groups, scores = scene
    res = guard(boxes, scores, groups, [Subject("face", face, 0.9)], w, h, len(groups) - 1, weights)
    for group in set(groups) - {"full"}:
        idx = [i for i, g in enumerate(groups) if g == group]
        best = [i for i in idx if res.ranks[i] == 1]
        if any(contains(boxes[i], face) for i in idx):
            assert contains(boxes[best[0]], face)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scene=scenes(), weights=WEIGHTS)
def test_guard_inputs_are_the_guards_own_arithmetic(scene, weights) -> None:  # type: ignore[no-untyped-def]
    w, h, face, boxes, groups, scores = scene
    subjects = [Subject("salient", face, 0.8)]
    shipped, per, tiers = learned.guard_inputs(boxes, scores, groups, subjects, w, h, len(groups) - 1)
    g = np.asarray([getattr(weights, k) for k in learned.GUARD_TERMS])
    g0 = np.asarray([getattr(DEFAULT_WEIGHTS, k) for k in learned.GUARD_TERMS])
    real = guard(boxes, scores, groups, subjects, w, h, len(groups) - 1, weights)
    np.testing.assert_allclose(scores + shipped + per @ (g - g0), real.scores, rtol=1e-9,
                               atol=1e-9 * max(1.0, float(np.abs(real.scores).max())))
    np.testing.assert_array_equal(tiers, real.tiers)  # the tiers do not move with the weights


def test_a_version_carries_its_guard_weights_and_the_suggestion_uses_them(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    subject_photo(600, 400, (0.7, 0.45)).save(path, quality=92)
    li = load_image(path, min_side=192)
    w, h = li.info.width, li.info.height
    subject = Subject("salient", (int(0.62 * w), int(0.35 * h), int(0.78 * w), int(0.55 * h)), 0.9)
    cs = generate_candidates(w, h, [parse_aspect("1:1")], subjects=[subject])
    names = learned.heuristic_input_names()
    zeros = np.zeros(len(names))
    pw = learned.PersonalWeights("heuristic", names, zeros, np.ones(len(names)), zeros,
                                 parent_sha256=learned.heuristic_base_hash(),
                                 guard={"place": 0.0, "cramp": 0.0, "cover": 40.0})
    saved = learned.save_version(pw, tmp_path / "models" / "personal" / "v1.safetensors")
    back = learned.read_version(saved.path)  # type: ignore[arg-type]
    assert back.guard == {"place": 0.0, "cramp": 0.0, "cover": 40.0}
    assert back.guard_weights == replace(DEFAULT_WEIGHTS, place=0.0, cramp=0.0, cover=40.0)

    # w = 0: the scorer's own scores are unchanged, only the guard's weights differ.
    personal = HeuristicScorer(None, back)
    res = personal.score([li], [cs])[0]
    mine = build_suggestion(li, cs, res, personal, [subject])
    plain = build_suggestion(li, cs, res, HeuristicScorer(), [subject])
    for weights, sug in ((back.guard_weights, mine), (None, plain)):
        expect = guard(cs.boxes, res.scores, cs.groups, [subject], w, h, cs.full_index, weights).scores
        by_box = {tuple(int(v) for v in b): float(e) for b, e in zip(cs.boxes, expect)}
        for crop in sug.crops:
            assert abs(crop.score - by_box[tuple(crop.box)]) < 1e-9
    assert any(abs(a.score - b.score) > 1e-6 for a, b in zip(mine.crops, plain.crops))

    # Edited weights (in the file's metadata) change its sha256: the version is refused.
    raw = saved.path.read_bytes()  # type: ignore[union-attr]
    edited = raw.replace(b'\\"cover\\": 40.0', b'\\"cover\\": 99.0')
    assert edited != raw
    saved.path.write_bytes(edited)  # type: ignore[union-attr]
    with pytest.raises(WeightsError, match="sha256"):
        learned.read_version(saved.path)  # type: ignore[arg-type]
