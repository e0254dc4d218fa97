"""A Suggestion's candidates as columns (``CandidateTable``): the lazily built Crops, every
selection made from the columns, the store's rows and the pickled form must be exactly what the
Crop objects say, on real camera photos, with and without ratio sets."""

from __future__ import annotations

import copy
import pickle
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.hardening import corpus_jpegs

from clipcrop_plugin.candidates import CandidateSet, generate_candidates, parse_aspect
from clipcrop_plugin.elements import ELEMENT_NAMES, explain_changes
from clipcrop_plugin.guard import guard
from clipcrop_plugin.imaging import LoadedImage, load_image
from clipcrop_plugin.results import Crop, ElementChange, PhotoInfo, Subject, Suggestion
from clipcrop_plugin.scoring.base import ScoreResult
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.store.bulk import pack_run
from clipcrop_plugin.suggest import build_suggestion, find_subjects

RATIOS = ("1:1", "4:5", "16:9")


def _reference_crops(loaded, cands, result, subjects) -> list[Crop]:  # type: ignore[no-untyped-def]
    """Every candidate as a Crop, built one by one the way build_suggestion did before columns."""
    g = guard(cands.boxes, np.asarray(result.scores, np.float64), cands.groups, subjects, cands.width,
              cands.height, cands.full_index)
    scores, fi = g.scores, cands.full_index
    elements = np.asarray(result.elements, dtype=np.float64)
    changes = elements - elements[fi]
    picks = explain_changes(changes, elements, fi)
    flags, notes = g.flags, g.notes
    out = []
    for i, group in enumerate(cands.groups):
        row = changes[i].tolist()
        out.append(Crop(group, tuple(np.asarray(cands.boxes)[i].tolist()), scores.tolist()[i], g.ranks.tolist()[i],
                        (scores - float(scores[fi])).tolist()[i], [ElementChange(ELEMENT_NAMES[k], row[k]) for k in picks[i]],
                        elements[i].tolist(), row, flags[i], notes[i]))
    return out


def _old_best(crops: list[Crop], aspect: str | None = None) -> Crop | None:
    firsts = [c for c in crops if c.aspect != "full" and c.rank == 1 and (aspect is None or c.aspect == aspect)]
    if not firsts:
        pool = [c for c in crops if c.aspect != "full" and (aspect is None or c.aspect == aspect)]
        return max(pool, key=lambda c: c.score) if pool else None
    if aspect is not None:
        return firsts[0]
    ratios = [c for c in firsts if c.aspect != "grid"]
    return max(ratios or firsts, key=lambda c: c.score)


def _old_top(crops: list[Crop], n: int) -> list[Crop]:
    sets = list(dict.fromkeys(c.aspect for c in crops if c.aspect != "full"))
    return [c for a in sets for c in sorted((c for c in crops if c.aspect == a), key=lambda c: c.rank)[:n]]


@pytest.fixture(scope="module")
def photos() -> list:  # type: ignore[type-arg]
    """Ten real camera photos, loaded, with their subjects (found once for every test)."""
    out = []
    for path in corpus_jpegs(10):
        loaded = load_image(path, min_side=HeuristicScorer.min_side)
        subjects, _ = find_subjects(loaded)
        out.append((loaded, subjects))
    return out


@pytest.mark.parametrize("ratios", [(), RATIOS], ids=["grid", "ratios"])
def test_columns_lazy_crops_and_the_old_crop_path_agree(photos, ratios) -> None:  # type: ignore[no-untyped-def]
    scorer = HeuristicScorer()
    aspects = [parse_aspect(r) for r in ratios]
    for loaded, subjects in photos:
        cands = generate_candidates(loaded.info.width, loaded.info.height, aspects, subjects=subjects if aspects else ())
        result = scorer.score([loaded], [cands])[0]
        s = build_suggestion(loaded, cands, result, scorer, subjects)
        # A fresh copy through pickle (what a worker process sends): columns, no Crop built yet.
        blob = pickle.dumps(s)
        assert b"ElementChange" not in blob and b"results\nCrop" not in blob and b"Crop\x94" not in blob
        fresh = pickle.loads(blob)
        reference = _reference_crops(loaded, cands, result, subjects)

        # The selections, from the columns, equal the old list-based ones.
        for aspect in [None, *fresh.aspects()]:
            assert fresh.best(aspect) == _old_best(reference, aspect)
        assert fresh.aspects() == list(dict.fromkeys(c.aspect for c in reference if c.aspect != "full"))
        assert fresh.top(3) == _old_top(reference, 3)
        assert fresh.choice() == fresh.choice()  # same Crop object each time
        assert fresh.best() is fresh.best()
        for aspect in fresh.aspects():
            assert fresh.ranked(aspect, 2) == _old_top([c for c in reference if c.aspect == aspect], 2)
        assert fresh.to_dict(top=2)["crops"] == [c.to_dict() for c in _old_top(reference, 2)]
        # ...and built only the crops they returned.
        assert len(fresh._built) < fresh.n_candidates // 2

        # Every lazily built Crop is the one the old loop built, field for field.
        assert s.crops == reference and fresh.crops == reference and fresh.n_candidates == len(reference)
        assert s.full_frame == reference[cands.full_index] and fresh.full_frame is fresh.crops[cands.full_index]
        assert fresh.to_dict() == {**fresh.to_dict(), "crops": [c.to_dict() for c in reference if c.aspect != "full"]}
        assert any(c.flags for c in reference) == bool(len(s.candidates.flag_rows))

        # A Suggestion made from those Crop objects (a plugin's) selects and stores the same.
        twin = Suggestion(s.path, True, info=s.info, scorer=s.scorer, device=s.device, crops=copy.deepcopy(reference),
                          full_frame=None, subjects=subjects)
        twin.full_frame = twin.crops[cands.full_index]
        assert twin.to_dict() == s.to_dict() and twin.to_dict(top=3) == s.to_dict(top=3)
        now = datetime(2026, 1, 1)
        assert pack_run(twin, "h", 1, now) == pack_run(pickle.loads(blob), "h", 1, now)


def test_the_columns_keep_every_flag_in_order_and_the_notes() -> None:
    """Two faces: a crop through both has "cuts face" twice, as the guard found them."""
    w, h = 1200, 800
    faces = [Subject("face", (100, 100, 220, 240), 0.9), Subject("face", (900, 120, 1020, 260), 0.8)]
    boxes = [(150, 0, 960, 800), (0, 0, 600, 800), (160, 0, 1200, 800), (0, 0, 1100, 800), (0, 0, 800, 800),
             (300, 0, 1100, 800), (0, 0, w, h)]
    groups = ["grid", "grid", "grid", "grid", "1:1", "1:1", "full"]
    cands = CandidateSet(w, h, np.array(boxes, dtype=np.int64), groups, 6)
    loaded = LoadedImage(Image.new("RGB", (12, 8)), PhotoInfo("x.jpg", w, h, w, h, 1, False, "JPEG"))
    result = ScoreResult(scores=np.array([0.9, 0.8, 0.7, 0.1, 0.5, 0.6, 0.2]),
                         elements=np.random.default_rng(3).random((7, 10)))
    s = build_suggestion(loaded, cands, result, HeuristicScorer(), faces)
    reference = _reference_crops(loaded, cands, result, faces)
    flags = [c.flags for c in reference]
    assert flags[0].count("cuts face") == 2 and flags[1][0] == "leaves out face" and flags[2][0] == "cuts face"
    assert sum(1 for c in reference if c.note) == 1  # no 1:1 crop keeps both faces: its best says so
    assert pickle.loads(pickle.dumps(s)).crops == reference
    assert [c.flags for c in s.crops] == flags and [c.note for c in s.crops] == [c.note for c in reference]


def test_a_suggestion_can_still_be_changed_like_a_plain_record(tmp_path: Path) -> None:
    src = corpus_jpegs(1)[0]
    loaded = load_image(src, min_side=HeuristicScorer.min_side)
    cands = generate_candidates(loaded.info.width, loaded.info.height)
    scorer = HeuristicScorer()
    s = build_suggestion(loaded, cands, scorer.score([loaded], [cands])[0], scorer)
    grid = s.ranked("grid")
    s.crops = grid[:3]  # a caller narrowing the candidates: the list is what counts from now on
    assert s.best() is grid[0] and s.aspects() == ["grid"] and s.n_candidates == 3 and s.full_frame is not None
    s.full_frame = None
    assert pickle.loads(pickle.dumps(s)).crops == grid[:3]
    failed = Suggestion("a.jpg", False, error="x")
    assert failed.best() is None and failed.n_candidates == 0 and bool(failed)


def test_replace_copies_a_suggestion_with_fields_changed() -> None:
    """What the pipeline did with dataclasses.replace: a copy with another path (the queue worker,
    a path map), or marked failed; the original is untouched and the copy keeps the columns."""
    src = corpus_jpegs(1)[0]
    loaded = load_image(src, min_side=HeuristicScorer.min_side)
    cands = generate_candidates(loaded.info.width, loaded.info.height, [parse_aspect("1:1")])
    scorer = HeuristicScorer()
    s = build_suggestion(loaded, cands, scorer.score([loaded], [cands])[0], scorer)
    moved = s.replace(path="/mnt/nas/x.jpg", subjects=[Subject("face", (1, 2, 30, 40), 0.5)])
    assert moved.path == "/mnt/nas/x.jpg" and s.path == str(src) and not s.subjects
    assert moved.candidates is s.candidates and moved.crops == s.crops and moved.best("1:1") == s.best("1:1")
    assert moved.to_dict()["crops"] == s.to_dict()["crops"]
    gone = s.replace(ok=False, error="decode failed: truncated", crops=[])
    assert not gone.ok and gone.n_candidates == 0 and gone.best() is None and s.n_candidates > 0
    assert pickle.loads(pickle.dumps(moved)) == moved
    with pytest.raises(TypeError, match="no field colour"):
        s.replace(colour="red")
