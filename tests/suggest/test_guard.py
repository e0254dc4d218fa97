"""The subject guard, crop-or-keep and scale-free explanations (issue 11)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.photos import subject_photo

from clipcrop_plugin.candidates import generate_candidates, parse_aspect, subject_focus
from clipcrop_plugin.guard import guard
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.results import Subject, is_keep
from clipcrop_plugin.scoring.base import ScoreResult
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.suggest import build_suggestion


def contains(box: tuple[int, ...] | np.ndarray, inner: tuple[int, ...]) -> bool:
    return box[0] <= inner[0] and box[1] <= inner[1] and box[2] >= inner[2] and box[3] >= inner[3]


@st.composite
def scenes(draw: st.DrawFn) -> tuple[int, int, tuple[int, int, int, int], np.ndarray, list[str], np.ndarray]:
    w = draw(st.integers(64, 3000))
    h = draw(st.integers(64, 3000))
    fw = draw(st.integers(4, max(4, w // 3)))
    fh = draw(st.integers(4, max(4, h // 3)))
    fx = draw(st.integers(0, w - fw))
    fy = draw(st.integers(0, h - fh))
    face = (fx, fy, fx + fw, fy + fh)
    n = draw(st.integers(2, 40))
    boxes = []
    for _ in range(n):
        x1 = draw(st.integers(0, w - 2))
        y1 = draw(st.integers(0, h - 2))
        x2 = draw(st.integers(x1 + 1, w))
        y2 = draw(st.integers(y1 + 1, h))
        boxes.append((x1, y1, x2, y2))
    groups = [draw(st.sampled_from(["grid", "1:1", "16:9"])) for _ in range(n)]
    boxes.append((0, 0, w, h))
    groups.append("full")
    # Scores on any scale: a scorer may span 1e-6 or 1e4.
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e4]))
    scores = np.array(draw(st.lists(st.floats(-1, 1, allow_nan=False), min_size=n + 1, max_size=n + 1))) * scale
    return w, h, face, np.array(boxes, dtype=np.int64), groups, scores


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenes())
def test_a_face_is_never_cut_by_a_best_crop_when_a_candidate_keeps_it(scene) -> None:  # type: ignore[no-untyped-def]
    w, h, face, boxes, groups, scores = scene
    res = guard(boxes, scores, groups, [Subject("face", face, 0.9)], w, h, len(groups) - 1)
    g = np.asarray(groups)
    for group in set(groups):
        idx = np.flatnonzero(g == group)
        best = idx[res.ranks[idx] == 1]
        assert len(best) == 1 and sorted(res.ranks[idx].tolist()) == list(range(1, len(idx) + 1))
        if any(contains(boxes[i], face) for i in idx):
            assert contains(boxes[best[0]], face), (group, boxes[best[0]], face)
        else:
            assert "cuts face" in res.flags[best[0]] or "leaves out face" in res.flags[best[0]]
            assert res.notes[best[0]] is not None and "face" in res.notes[best[0]]


@settings(max_examples=60, deadline=None)
@given(scenes(), st.sampled_from([1e-4, 0.5, 1e3]), st.sampled_from([-5.0, 0.0, 5.0]))
def test_guard_ranking_does_not_depend_on_the_scorers_scale(scene, a: float, b: float) -> None:  # type: ignore[no-untyped-def]
    w, h, face, boxes, groups, scores = scene
    scores = scores / max(1e-12, float(np.abs(scores).max()))  # a scorer's own scale, then a*s+b
    subjects = [Subject("face", face, 0.9)]
    one = guard(boxes, scores, groups, subjects, w, h, len(groups) - 1)
    two = guard(boxes, scores * a + b, groups, subjects, w, h, len(groups) - 1)
    # Compared through the ranks of the top candidate only where the adjusted scores are not
    # within float rounding of each other.
    # An exact tie (two boxes the scorer and the guard see alike) has no order to keep.
    gaps = np.abs(np.subtract.outer(one.scores, one.scores))[~np.eye(len(one.scores), dtype=bool)]
    if np.all(gaps > 1e-6 * max(1.0, float(np.abs(one.scores).max()))):
        assert one.ranks.tolist() == two.ranks.tolist()


def _photo(tmp_path: Path, w: int = 600, h: int = 400, center: tuple[float, float] = (0.5, 0.5)):  # type: ignore[no-untyped-def]
    p = tmp_path / "p.jpg"
    subject_photo(w, h, center).save(p, "JPEG")
    return load_image(p)


def test_real_scorer_keeps_a_face_and_says_so_when_the_ratio_cannot_hold_the_person(tmp_path: Path) -> None:
    li = _photo(tmp_path, 600, 400, (0.8, 0.3))
    # A standing person over the whole height on the right; the face at the top of the body.
    person = Subject("person", (420, 10, 560, 400), 0.8)
    face = Subject("face", (455, 30, 525, 110), 0.9)
    aspects = [parse_aspect("16:9"), parse_aspect("1:1"), parse_aspect("9:16")]
    cs = generate_candidates(600, 400, aspects, subjects=[person, face])
    [res] = HeuristicScorer().score([li], [cs])
    s = build_suggestion(li, cs, res, HeuristicScorer(), [person, face])
    assert s.subjects == [person, face]
    for aspect in ("16:9", "1:1", "9:16"):
        best = s.best(aspect)
        assert best is not None and contains(best.box, face.box), (aspect, best.box)
    # 16:9 of a 3:2 frame is 337 px high: the 390 px person does not fit, the face does.
    wide = s.best("16:9")
    assert wide is not None and "cuts subject" in wide.flags and wide.note and "kept the face" in wide.note
    # The 9:16 crop (225x400) holds the whole person: nothing to say.
    tall = s.best("9:16")
    assert tall is not None and contains(tall.box, person.box) and tall.note is None


def test_look_room_places_a_profile_on_the_back_third() -> None:
    # A profile left of centre looks into the frame (to the right): the room goes in front of it.
    profile = Subject("profile_face", (500, 300, 560, 370), 0.9)
    focus = subject_focus([profile], 1200, 800)
    assert focus is not None and focus.look == 1
    behind = (263, 200, 663, 600)  # the face on the right third: the room is behind it
    ahead = (397, 200, 797, 600)  # the face on the left third: the room is in front
    boxes = np.array([behind, ahead, (0, 0, 1200, 800)], dtype=np.int64)
    res = guard(boxes, np.zeros(3), ["1:1", "1:1", "full"], [profile], 1200, 800, 2)
    assert res.ranks.tolist()[:2] == [2, 1]
    mirrored = Subject("profile_face", (640, 300, 700, 370), 0.9)  # right of centre: looks left
    boxes = np.array([(1200 - x2, y1, 1200 - x1, y2) for x1, y1, x2, y2 in (behind, ahead)] + [(0, 0, 1200, 800)])
    res = guard(boxes, np.zeros(3), ["1:1", "1:1", "full"], [mirrored], 1200, 800, 2)
    assert res.ranks.tolist()[:2] == [2, 1]


def test_ratio_crops_without_a_subject_do_not_hug_a_corner(tmp_path: Path) -> None:
    # Flat scores (a scorer with no opinion): the centred crop wins over the corner ones.
    boxes = np.array([[0, 0, 400, 400], [100, 0, 500, 400], [200, 0, 600, 400], [0, 0, 600, 400]], dtype=np.int64)
    res = guard(boxes, np.array([0.5, 0.5, 0.5, 0.5]), ["1:1", "1:1", "1:1", "full"], [], 600, 400, 3)
    assert res.ranks[1] == 1


def test_explanations_are_scale_free_and_only_the_full_frame_says_no_change(tmp_path: Path) -> None:
    li = _photo(tmp_path)
    cs = generate_candidates(600, 400, [parse_aspect("1:1"), parse_aspect("3:2")])
    n = len(cs)
    rng = np.random.default_rng(3)
    elements = rng.uniform(size=(n, 10))
    elements[:, 4] *= 50.0  # one element on a much larger scale must not crowd the others out
    same = np.all(cs.boxes == cs.boxes[cs.full_index], axis=1)
    elements[same] = elements[cs.full_index]  # a scorer gives the same box the same elements
    scores = rng.normal(size=n)
    picks = []
    for scale in (1e-5, 1.0, 1e3):
        s = build_suggestion(li, cs, ScoreResult(scores * scale, elements * scale), HeuristicScorer())
        same_as_full = [c for c in s.crops if c.box == s.full_frame.box]  # type: ignore[union-attr]
        for c in s.crops:
            if c.aspect == "full" or c in same_as_full:
                assert c.explanation == []
            else:
                assert c.explanation, c
        picks.append([[e.element for e in c.explanation] for c in s.crops])
        # A fixed absolute threshold would drop every change at 1e-5; a relative one does not.
    assert picks[0] == picks[1] == picks[2]
    counts = {}
    for row in picks[1]:
        for name in row:
            counts[name] = counts.get(name, 0) + 1
    assert counts.get("curved", 0) < 0.5 * sum(counts.values())  # the 50x element is not everywhere


def test_keep_rule() -> None:
    assert is_keep("grid", -0.3, 0.02) and is_keep("grid", 0.01, 0.02) and not is_keep("grid", 0.03, 0.02)
    assert not is_keep("4:5", -0.9, 0.02)  # a requested ratio always gets its crop
    assert not is_keep("grid", -0.3, float("-inf"))


def test_choice_is_keep_for_a_grid_that_does_not_beat_the_full_frame(tmp_path: Path) -> None:
    li = _photo(tmp_path)
    cs = generate_candidates(600, 400, [parse_aspect("4:5")])
    scores = np.zeros(len(cs))
    scores[cs.full_index] = 1.0  # the full frame beats every crop
    s = build_suggestion(li, cs, ScoreResult(scores, None), HeuristicScorer())
    assert s.choice("grid", 0.02).keep and s.choice("grid", 0.02).crop is None
    four_five = s.choice("4:5", 0.02)
    assert not four_five.keep and four_five.crop is not None and four_five.crop.aspect == "4:5"
    # Without an aspect, the ratio the user asked for is the primary crop.
    assert s.choice(margin=0.02).crop is not None and s.choice(margin=0.02).crop.aspect == "4:5"  # type: ignore[union-attr]
    scores[:] = 0.0
    scores[[i for i, g in enumerate(cs.groups) if g == "grid"][0]] = 2.0
    s = build_suggestion(li, cs, ScoreResult(scores, None), HeuristicScorer())
    ch = s.choice("grid", 0.02)
    assert not ch.keep and ch.crop is not None and ch.crop.improvement == pytest.approx(2.0)


def test_a_salient_box_over_most_of_the_frame_is_the_scene_not_a_subject() -> None:
    # Confident saliency over 90% of the photo: no ratio crop can hold it, and it says nothing
    # about where to crop, so it must not pin the crop to one side; the centred crop wins.
    scene = Subject("salient", (10, 10, 590, 390), 0.9)
    boxes = np.array([[0, 0, 400, 400], [100, 0, 500, 400], [200, 0, 600, 400],
                      [50, 50, 550, 350], [100, 100, 500, 300], [0, 0, 600, 400]], dtype=np.int64)
    groups = ["1:1", "1:1", "1:1", "grid", "grid", "full"]
    # The scorer leans to the left edge a little (the grid crops set the scale of its scores).
    scores = np.array([0.52, 0.5, 0.5, 0.0, 1.0, 0.5])
    res = guard(boxes, scores, groups, [scene], 600, 400, 5)
    assert res.ranks[1] == 1
    # A compact confident object on the left is a subject: the crop goes where it is.
    ball = Subject("salient", (20, 120, 180, 280), 0.9)
    res = guard(boxes, np.array([0.5, 0.5, 0.52, 0.0, 1.0, 0.5]), groups, [ball], 600, 400, 5)
    assert res.ranks[0] == 1


def test_a_ratio_that_cannot_hold_the_subject_keeps_as_much_of_it_as_fits() -> None:
    # A wide object (the ratio holds at most 4/6 of it): the best crop is the one keeping most,
    # even when the scorer slightly prefers a crop keeping less.
    wide = Subject("salient", (0, 150, 600, 250), 0.9)
    boxes = np.array([[0, 0, 400, 400], [100, 0, 500, 400], [0, 0, 300, 300], [0, 0, 600, 400]], dtype=np.int64)
    res = guard(boxes, np.array([0.5, 0.5, 0.55, 0.5]), ["1:1", "1:1", "1:1", "full"], [wide], 600, 400, 3)
    assert res.ranks[2] == 3 and "cuts subject" in res.flags[0]


def test_a_subject_too_tall_for_the_ratio_is_cut_from_the_bottom() -> None:
    # A standing object with no face found (a person seen from the side, a tower): a 16:9 crop
    # cannot hold it, and the one that keeps its top wins over the middle slice the scorer likes.
    tall = Subject("salient", (200, 60, 380, 500), 0.9)
    top, middle, bottom = (0, 40, 512, 328), (0, 130, 512, 418), (0, 224, 512, 512)
    boxes = np.array([middle, top, bottom, (0, 0, 512, 512)], dtype=np.int64)
    res = guard(boxes, np.array([0.56, 0.5, 0.5, 0.5]), ["16:9", "16:9", "16:9", "full"], [tall], 512, 512, 3)
    assert res.ranks.tolist()[:3] == [2, 1, 3]


def test_a_subject_too_wide_for_the_ratio_is_cut_evenly_on_both_sides() -> None:
    # A big ball whose box is wider than a 4:5 crop: every crop inside the box keeps the same
    # share of it, so only centring keeps the ball itself (the detector's box is rarely exact).
    ball = Subject("salient", (225, 74, 975, 763), 0.9)
    centred, sliding = (280, 0, 920, 800), (354, 0, 994, 800)
    boxes = np.array([sliding, centred, (0, 0, 640, 800), (560, 0, 1200, 800), (0, 0, 1200, 800)], dtype=np.int64)
    scores = np.array([0.53, 0.5, 0.4, 0.6, 0.5])  # the scorer leans right a little
    res = guard(boxes, scores, ["4:5"] * 4 + ["full"], [ball], 1200, 800, 4)
    assert res.ranks[1] == 1 and res.ranks[0] == 2


def test_a_standing_object_keeps_its_top_when_the_ratio_holds_most_of_it() -> None:
    # A tower 0.8 of the frame tall; a 16:9 crop 0.75 tall keeps >= 90% of it either way, but
    # the one that cuts the top (the scorer's favourite, more street below) beheads the tower.
    tower = Subject("salient", (220, 20, 300, 420), 0.9)
    low, high = (0, 80, 640, 440), (0, 0, 640, 360)
    boxes = np.array([low, high, (0, 0, 640, 480)], dtype=np.int64)
    res = guard(boxes, np.array([0.55, 0.5, 0.5]), ["16:9", "16:9", "full"], [tower], 640, 480, 2)
    assert res.ranks[1] == 1 and res.ranks[0] == 2
    # A wide object is not "standing": the same boxes turned sideways change nothing.
    car = Subject("salient", (100, 200, 540, 280), 0.9)
    res = guard(boxes, np.array([0.55, 0.5, 0.5]), ["16:9", "16:9", "full"], [car], 640, 480, 2)
    assert res.ranks[0] == 1


def test_an_unsure_object_still_says_which_side_a_ratio_crop_goes() -> None:
    # A salient box right of centre, found with too little confidence to pin the crop: the
    # ratio crop's home moves towards it instead of the frame's centre, so of two crops the
    # scorer rates alike, the one over the object wins; with no subject the centred one wins.
    unsure = Subject("salient", (330, 100, 470, 300), 0.45)
    centred, right = (100, 0, 500, 400), (200, 0, 600, 400)
    boxes = np.array([centred, right, (0, 0, 600, 400)], dtype=np.int64)
    scores = np.array([0.5, 0.5, 0.5])
    assert guard(boxes, scores, ["1:1", "1:1", "full"], [unsure], 600, 400, 2).ranks[1] == 1
    assert guard(boxes, scores, ["1:1", "1:1", "full"], [], 600, 400, 2).ranks[0] == 1
    # Sideways only: a salient box's height says little (it reaches up into the sky), so of two
    # 16:9 crops that both hold a high box, the vertically centred one still wins.
    wide_c, wide_top = (0, 62, 600, 338), (0, 0, 600, 276)
    boxes = np.array([wide_top, wide_c, (0, 0, 600, 400)], dtype=np.int64)
    high = Subject("salient", (200, 70, 400, 170), 0.45)
    assert guard(boxes, scores, ["16:9", "16:9", "full"], [high], 600, 400, 2).ranks[1] == 1


def test_a_standing_group_is_not_cut_at_the_shins(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two faces found (a couple standing for the camera), no person boxes; their bodies, about
    # 8.5 face heights tall, reach the bottom of the photo. Of two 16:9 crops that both keep the
    # faces well placed, the one that stops at their shins loses to the one that keeps their feet.
    faces = [Subject("face", (256, 202, 288, 232), 0.6), Subject("face", (294, 211, 326, 245), 0.6)]
    shins, whole, high = (0, 96, 640, 456), (0, 120, 640, 480), (0, 0, 640, 360)
    boxes = np.array([shins, whole, high, (0, 0, 640, 480)], dtype=np.int64)
    scores = np.array([0.52, 0.5, 0.3, 0.5])  # the scorer leans to the shins crop (0.2 of its spread)
    res = guard(boxes, scores, ["16:9", "16:9", "16:9", "full"], faces, 640, 480, 3)
    assert res.ranks[1] == 1 and res.ranks[0] == 2
    # A portrait's face whose body runs out of the photo: no such rule, the scorer decides.
    portrait = [Subject("face", (250, 60, 390, 220), 0.8)]
    boxes = np.array([(0, 0, 640, 360), (0, 40, 640, 400), (0, 120, 640, 480), (0, 0, 640, 480)], dtype=np.int64)
    args = (boxes, np.array([0.5, 0.52, 0.3, 0.5]), ["16:9", "16:9", "16:9", "full"], portrait, 640, 480, 3)
    res = guard(*args)
    monkeypatch.setattr("clipcrop_plugin.guard.W_FEET", 0.0)
    assert guard(*args).scores.tolist() == res.scores.tolist()
    # ...while for the couple the rule is what decides.
    assert guard(boxes := np.array([shins, whole, high, (0, 0, 640, 480)], dtype=np.int64), scores,
                 ["16:9", "16:9", "16:9", "full"], faces, 640, 480, 3).ranks[0] == 1


def test_legs_running_out_of_the_photo_are_not_cut_at_the_thighs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Three people standing (faces 40 px tall, tops at y 190-215), their feet just below the
    # photo's bottom edge: the photo cuts them at the shins already. A 16:9 crop that keeps the
    # faces and ends at their thighs (y 336, ~3.6 face heights down) cuts more of them than one
    # that ends where the photo does, even when the scorer leans to it.
    faces = [Subject("face", (250, 193, 290, 233), 0.99), Subject("face", (300, 208, 340, 248), 0.99),
             Subject("face", (335, 215, 375, 255), 0.99)]
    thighs, whole = (0, 0, 640, 360), (0, 120, 640, 480)
    boxes = np.array([thighs, whole, (0, 60, 640, 420), (0, 0, 640, 480)], dtype=np.int64)
    scores = np.array([0.62, 0.5, 0.3, 0.5])  # the scorer prefers the thighs crop
    res = guard(boxes, scores, ["16:9", "16:9", "16:9", "full"], faces, 640, 480, 3)
    assert res.ranks[1] == 1 and res.ranks[0] > 1
    with monkeypatch.context() as m:  # and without the rule, the scorer would have had its way
        m.setattr("clipcrop_plugin.guard.W_FEET", 0.0)
        assert guard(boxes, scores, ["16:9", "16:9", "16:9", "full"], faces, 640, 480, 3).ranks[0] == 1
    # A crop ending at the waist (above the legs) is a medium shot: the rule leaves it alone.
    waist = (80, 0, 560, 270)
    args = (np.array([waist, whole, (0, 0, 640, 480)], dtype=np.int64), np.array([0.5, 0.5, 0.5]),
            ["16:9", "16:9", "full"], faces, 640, 480, 2)
    before = guard(*args).scores[0]
    monkeypatch.setattr("clipcrop_plugin.guard.W_FEET", 0.0)
    assert guard(*args).scores[0] == before


def test_a_crop_does_not_slice_the_side_off_a_persons_torso(monkeypatch: pytest.MonkeyPatch) -> None:
    # One face right of centre, no person box: of two 9:16 crops that both keep the face, the one
    # whose edge runs through the shoulders under it loses to the one that keeps them, although the
    # scorer prefers it a little (as the heuristic prefers text-heavy halves of a poster).
    face = [Subject("face", (400, 40, 450, 90), 0.99)]
    slicing, keeping = (190, 0, 460, 480), (300, 0, 570, 480)
    boxes = np.array([slicing, keeping, (0, 0, 270, 480), (0, 0, 640, 480)], dtype=np.int64)
    scores = np.array([0.62, 0.5, 0.3, 0.5])
    res = guard(boxes, scores, ["9:16", "9:16", "9:16", "full"], face, 640, 480, 3)
    assert res.ranks[1] == 1 and res.ranks[0] == 2
    monkeypatch.setattr("clipcrop_plugin.guard.W_TORSO", 0.0)
    assert guard(boxes, scores, ["9:16", "9:16", "9:16", "full"], face, 640, 480, 3).ranks[0] == 1


def test_unsure_of_the_subject_a_ratio_crop_keeps_more_of_the_photo() -> None:
    # No trusted subject: of two centred 1:1 crops, the largest wins over a tighter one the scorer
    # rates a little higher (a tighter crop loses more of whatever the subject turns out to be).
    big, tight = (100, 0, 500, 400), (160, 60, 440, 340)
    boxes = np.array([tight, big, (150, 50, 450, 350), (0, 0, 600, 400)], dtype=np.int64)
    scores = np.array([0.55, 0.5, 0.3, 0.5])
    assert guard(boxes, scores, ["1:1", "1:1", "1:1", "full"], [], 600, 400, 3).ranks[1] == 1
    # A trusted subject decides instead: the same boxes around a confident compact object.
    ball = Subject("salient", (250, 150, 350, 250), 0.9)
    assert guard(boxes, scores, ["1:1", "1:1", "1:1", "full"], [ball], 600, 400, 3).ranks[0] == 1


def test_a_ratio_crop_that_is_the_whole_photo_scores_as_the_full_frame() -> None:
    # A square photo's largest 1:1 crop is the photo itself: no composition term may make it
    # better or worse than "keep as is" (it showed "+0.47 vs full frame" with no element change).
    w = h = 600
    boxes = np.array([(0, 0, 600, 600), (100, 100, 500, 500), (0, 100, 400, 500), (0, 0, 600, 600)], dtype=np.int64)
    scores = np.array([0.5, 0.6, 0.4, 0.5])
    for subjects in ([], [Subject("salient", (250, 60, 330, 560), 0.9)], [Subject("salient", (200, 200, 400, 400), 0.3)],
                     [Subject("face", (260, 120, 320, 190), 0.8)]):
        res = guard(boxes, scores, ["1:1", "1:1", "1:1", "full"], subjects, w, h, 3)
        assert res.scores[0] == pytest.approx(res.scores[3], abs=1e-12), subjects
