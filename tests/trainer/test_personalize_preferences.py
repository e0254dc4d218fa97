"""Labels to preferences: the rules, and bad input counted in one line (real SQLite, real files)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
from support.personalize import make_photos

from clipcrop_plugin.api import Library
from clipcrop_plugin.candidates import generate_candidates
from clipcrop_plugin.scan import scan_folders
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.store import LabelRecord, Store
from trainer.personalize import PersonalizeSettings, personalize
from trainer.preferences import collect, drop_contradictions, iou, make_pairs, pairs_for_photo


def _label(i: int, kind: str, box, other=None, aspect=None) -> LabelRecord:  # type: ignore[no-untyped-def]
    return LabelRecord(i, 1, "/p.jpg", kind, aspect, None, tuple(box), None, tuple(other) if other else None,
                       400, 300, "test", datetime(2026, 1, 1), None, None)


CANDS = generate_candidates(400, 300, grid=True).boxes.astype(float)


def test_far4_prefers_the_box_over_at_most_four_anchors_that_barely_overlap_it() -> None:
    box = (40, 30, 300, 240)
    pairs = pairs_for_photo("/p.jpg", [_label(1, "box", box)], CANDS, "far4")
    assert 1 <= len(pairs) <= 4
    assert all(p.better == box and iou(p.worse, box) < 0.5 for p in pairs)
    rej = pairs_for_photo("/p.jpg", [_label(2, "reject", box)], CANDS, "far4")
    assert rej and all(p.worse == box and iou(p.better, box) < 0.5 for p in rej)


def test_iou_rule_also_grades_candidates_by_their_overlap_with_the_wanted_box() -> None:
    box = (40, 30, 300, 240)
    far4 = pairs_for_photo("/p.jpg", [_label(1, "accept", box)], CANDS, "far4")
    graded = pairs_for_photo("/p.jpg", [_label(1, "accept", box)], CANDS, "iou")
    extra = [p for p in graded if p not in far4]
    assert len(extra) >= 8
    assert all(iou(p.better, box) >= iou(p.worse, box) + 0.25 for p in extra)


def test_a_drawn_box_is_preferred_over_the_suggestion_it_replaced() -> None:
    shown = (0.0, 0.0, 300.0, 300.0)
    box = (100, 20, 380, 280)
    pairs = pairs_for_photo("/p.jpg", [_label(1, "box", box, aspect="grid")], CANDS, "far4", {"grid": shown})
    assert any(p.better == box and p.worse == shown for p in pairs)
    # Nearly the same crop as the suggestion: no pair from it.
    same = pairs_for_photo("/p.jpg", [_label(1, "box", (1, 0, 300, 300), aspect="grid")], CANDS, "far4",
                           {"grid": shown})
    assert not any(p.worse == shown for p in same)


def test_two_wanted_crops_of_one_photo_are_never_each_others_negative() -> None:
    a, b = (0, 0, 240, 300), (160, 0, 400, 300)  # e.g. its 4:5 and another accepted crop
    pairs = pairs_for_photo("/p.jpg", [_label(1, "accept", a), _label(2, "box", b)], CANDS, "iou")
    kept, bad = drop_contradictions(pairs)
    assert not bad and len(kept) == len(set(pairs))
    assert not any({p.better, p.worse} == {tuple(map(float, a)), tuple(map(float, b))} for p in pairs)


def test_contradictory_labels_are_both_left_out() -> None:
    box = (40, 30, 300, 240)
    labels = [_label(1, "prefer", box, (0, 0, 400, 300)), _label(2, "prefer", (0, 0, 400, 300), box),
              _label(3, "accept", (10, 10, 200, 200))]
    kept, bad = drop_contradictions(pairs_for_photo("/p.jpg", labels, CANDS, "iou"))
    assert bad == {1, 2} and kept and all(p.label_id == 3 for p in kept)


class _OtherScorer(HeuristicScorer):
    """Another scorer's runs (a plugin's, say): same numbers, another name."""

    name = "other-plugin"


def test_bad_input_is_counted_reported_in_one_line_and_never_fatal(tmp_path: Path) -> None:
    make_photos(tmp_path / "photos", 26)
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    with Store.open(db) as store:
        scan_folders(store, [str(tmp_path / "photos")], HeuristicScorer())
    photos = sorted((tmp_path / "photos").glob("*.jpg"))
    with Library.open(db, scorer="heuristic") as lib:
        rng = np.random.default_rng(0)
        # photos[0] gets only the contradictory pair below, so exactly those two labels contradict
        # each other, whatever order the scorer and the guard give its candidates.
        for p in photos[1:22]:
            c = [c for c in lib.photo(str(p)).candidates if c.aspect == "grid"]
            i, j = rng.choice(len(c), 2, replace=False)
            lib.record_label(str(p), "box", box=list(c[i].box))
            lib.record_label(str(p), "prefer", box=list(c[i].box), other_box=list(c[j].box))
        # contradictory: accepted and rejected, the same crop
        lib.record_label(str(photos[0]), "accept", aspect="grid", rank=1)
        lib.record_label(str(photos[0]), "reject", aspect="grid", rank=1)
        # a photo deleted after it was labelled
        lib.record_label(str(photos[22]), "accept", aspect="grid", rank=1)
        photos[22].unlink()
        # a photo whose content (and size) changed since it was labelled; the scan saw the change
        lib.record_label(str(photos[23]), "accept", aspect="grid", rank=1)
    from PIL import Image

    Image.new("RGB", (200, 150), (90, 120, 40)).save(photos[23])
    with Store.open(db) as store:
        scan_folders(store, [str(tmp_path / "photos")], HeuristicScorer())
    # a label given on another scorer's suggestion
    with Library.open(db, scorer=_OtherScorer()) as lib:
        lib.suggest(photos[24])
        lib.record_label(str(photos[24]), "accept", aspect="grid", rank=1)
    with Store.open(db) as store:
        labelled, report = collect(store, "heuristic")
        make_pairs(labelled, report)
        assert (report.contradictory, report.deleted, report.changed, report.other_scorer) == (2, 1, 1, 1)
        assert report.used == report.labels - 4
        line = report.line()
        assert "\n" not in line and line.startswith(f"used {report.used} of {report.labels} labels")
        for words in ("2 contradictory", "1 for photos changed", "1 for deleted", "1 were given on another scorer"):
            assert words in line, line
        res = personalize(PersonalizeSettings(scorer="heuristic"), progress=False, store=store)
        assert res.report == line and res.labels == report.used
