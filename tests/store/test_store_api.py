"""The Store API against a real database (SQLite and, given a server, PostgreSQL): recording, active runs, queries, details, labels, models."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from support.store import FakeScorer, synthetic_suggestion

from clipcrop_plugin.candidates import parse_aspect
from clipcrop_plugin.errors import ConfigError, StoreError
from clipcrop_plugin.store import QueryFilters, Store
from clipcrop_plugin.store.packing import pack_candidates, unpack_candidates


@pytest.fixture
def store(db_url: str):  # type: ignore[no-untyped-def]
    with Store.open(db_url) as s:
        yield s


def test_packing_round_trips_small_and_huge_boxes() -> None:
    rng = np.random.default_rng(0)
    for hi in (4000, 200_000):
        boxes = rng.integers(0, hi, (90, 4))
        scores = rng.random(90).astype(np.float32)
        sets = rng.integers(0, 3, 90).astype(np.uint8)
        ranks = rng.integers(1, 90, 90).astype(np.uint16)
        out = unpack_candidates(pack_candidates(boxes, scores, sets, ranks))
        assert (out.boxes == boxes).all() and (out.scores == scores).all()
        assert (out.sets == sets).all() and (out.ranks == ranks).all()


def test_record_and_detail_keep_every_candidate(store: Store) -> None:
    rng = np.random.default_rng(0)
    s = synthetic_suggestion("/lib/a.jpg", rng, aspects=(parse_aspect("1:1"),))
    pid = store.record_suggestion(s, "hash-a", mtime=1.5, size=1234)
    d = store.photo_detail("/lib/a.jpg")
    assert d.photo.id == pid and d.photo.status == "scored" and (d.photo.width, d.photo.height) == (4000, 3000)
    assert len(d.candidates) == len(s.crops)
    got = {(c.aspect, c.rank): c for c in d.candidates}
    for c in s.crops:
        g = got[(c.aspect, c.rank)]
        assert g.box == c.box
        assert g.score == pytest.approx(c.score, abs=1e-6)
        assert g.improvement == pytest.approx(c.improvement, abs=1e-6)
        assert g.changes == pytest.approx(c.changes, abs=2.5e-3)  # uint8-quantized beyond the top rows
    best = s.best()
    assert d.photo.crop is not None and d.photo.crop.box == best.box
    assert [e.element for e in d.photo.crop.explanation] == [e.element for e in best.explanation]
    assert set(d.best) == {"grid", "1:1"}
    assert d.best["1:1"].box == s.best("1:1").box
    assert d.full_frame is not None and d.full_frame.box == (0, 0, 4000, 3000)
    assert d.photo.crop.fractions == pytest.approx((best.box[0] / 4000, best.box[1] / 3000,
                                                    best.box[2] / 4000, best.box[3] / 3000))
    # by id too; unknown photos are a clear error
    assert store.photo_detail(pid).photo.path == "/lib/a.jpg"
    with pytest.raises(StoreError, match="not in the database"):
        store.photo_detail("/lib/nope.jpg")


def test_rescoring_with_another_scorer_keeps_both_and_queries_use_the_active(store: Store) -> None:
    rng = np.random.default_rng(1)
    a = synthetic_suggestion("/lib/x.jpg", rng, scorer=FakeScorer("heuristic"))
    b = synthetic_suggestion("/lib/x.jpg", rng, scorer=FakeScorer("clipcropping", "w" * 64, "cuda"))
    pid = store.record_suggestion(a, "hx")
    store.record_suggestion(b, "hx")
    assert store.is_scored("hx", "heuristic", None) and store.is_scored("hx", "clipcropping", "w" * 64)
    assert not store.is_scored("hx", "clipcropping", None)
    d = store.photo_detail(pid)
    assert [r.scorer for r in d.runs] == ["clipcropping", "heuristic"] and d.run.scorer == "clipcropping"
    [row] = store.query()
    assert row.crop.box == b.best().box
    # the heuristic run is still reachable explicitly, and can be made active again
    [old] = store.query(QueryFilters(scorer="heuristic"))
    assert old.crop.box == a.best().box
    assert store.set_active_scorer("heuristic", None) == 1
    assert store.query()[0].crop.box == a.best().box
    assert store.active_scorer(pid) == ("heuristic", None)
    # re-scoring with the same scorer replaces its run instead of piling up
    store.record_suggestion(synthetic_suggestion("/lib/x.jpg", rng), "hx")
    assert len(store.photo_detail(pid).runs) == 2
    # changed content: runs of the old content go
    store.record_suggestion(synthetic_suggestion("/lib/x.jpg", rng), "hx2")
    assert len(store.photo_detail(pid).runs) == 1


def test_query_filters_and_sorts(store: Store) -> None:
    rng = np.random.default_rng(2)
    for i in range(30):
        s = synthetic_suggestion(f"/lib/{'trip' if i % 3 == 0 else 'home'}/{i:02d}.jpg", rng,
                                 aspects=(parse_aspect("1:1"),) if i % 2 == 0 else (),
                                 taken_at=datetime(2020 + i % 4, 1, 1), camera=("Canon", f"EOS {i % 2}D"))
        store.record_suggestion(s, f"h{i}")
    store.record_failure("/lib/home/broken.jpg", "/lib/home/broken.jpg: not an image")
    everything = store.query(limit=None)
    assert len(everything) == 30  # improvement sort lists scored photos only
    imps = [p.crop.improvement for p in everything]
    assert imps == sorted(imps, reverse=True)
    assert len(store.query(sort="path", limit=None)) == 31
    assert [p.path for p in store.query(QueryFilters(status="failed"), sort="path")] == ["/lib/home/broken.jpg"]
    assert store.query(QueryFilters(status="failed"), sort="path")[0].error.endswith("not an image")
    trip = store.query(QueryFilters(folder="/lib/trip"), limit=None)
    assert len(trip) == 10 and all(p.path.startswith("/lib/trip/") for p in trip)
    assert store.count(QueryFilters(path_glob="*/home/0*.jpg")) == 6
    sq = store.query(QueryFilters(aspect="1:1"), limit=None)
    assert len(sq) == 15 and all(p.crop.aspect == "1:1" and p.crop.rank == 1 for p in sq)
    cut = sorted(imps)[15]
    assert all(p.crop.improvement >= cut for p in store.query(QueryFilters(min_improvement=cut), limit=None))
    assert len(store.query(QueryFilters(min_improvement=cut), limit=None)) == sum(v >= cut for v in imps)
    assert all(p.crop.score >= 0.9 for p in store.query(QueryFilters(min_score=0.9), limit=None))
    enh = store.query(QueryFilters(enhances="rule-of-thirds"), limit=None)
    assert enh and all(any(e.element == "rule_of_thirds" and e.change > 0 for e in p.crop.explanation) for p in enh)
    expected = sum(any(e.element == "rule_of_thirds" and e.change > 0 for e in p.crop.explanation) for p in everything)
    assert len(enh) == expected == store.count(QueryFilters(enhances="rule_of_thirds"))
    red = store.query(QueryFilters(reduces="lighting"), limit=None)
    assert all(any(e.element == "lighting" and e.change < 0 for e in p.crop.explanation) for p in red)
    with pytest.raises(ConfigError, match="unknown element"):
        store.query(QueryFilters(enhances="sharpness"))
    taken = store.query(QueryFilters(taken_after=datetime(2022, 1, 1)), sort="taken", limit=None)
    assert len(taken) == 14 and taken[0].taken_at.year == 2023
    assert len(store.query(QueryFilters(camera="eos 1d"), limit=None)) == 15
    store.add_label("/lib/trip/00.jpg", "accept")
    assert [p.path for p in store.query(QueryFilters(labelled=True), limit=None)] == ["/lib/trip/00.jpg"]
    assert len(store.query(QueryFilters(labelled=False), limit=None)) == 29
    with pytest.raises(ConfigError):
        store.query(sort="random")
    page = store.query(sort="path", limit=5, offset=5)
    assert [p.path for p in page] == [p.path for p in store.query(sort="path", limit=None)][5:10]


def test_relink_gone_offline(store: Store, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    old = tmp_path / "old.jpg"  # does not exist on disk: the file was moved away
    pid = store.record_suggestion(synthetic_suggestion(str(old), rng), "hm")
    assert store.relink("hm", str(tmp_path / "new.jpg")) == pid
    assert store.find_path(str(old)) is None and store.find_path(str(tmp_path / "new.jpg")).id == pid
    assert store.relink("unknown", "/x.jpg") is None
    # a copy (original still present) is not a move
    keep = tmp_path / "keep.jpg"
    keep.write_bytes(b"x")
    kid = store.record_suggestion(synthetic_suggestion(str(keep), rng), "hk")
    assert store.relink("hk", str(tmp_path / "copy.jpg")) is None
    cid = store.copy_scores(kid, str(tmp_path / "copy.jpg"))
    assert store.photo_detail(cid).photo.crop.box == store.photo_detail(kid).photo.crop.box
    assert store.mark_gone(str(keep))
    assert store.query(QueryFilters(folder=str(tmp_path)), sort="path", limit=None)[0].path != str(keep)
    assert len(store.query(QueryFilters(status="gone"), sort="path")) == 1
    assert store.mark_offline(str(tmp_path)) == 3
    assert all(p.offline for p in store.query(QueryFilters(folder=str(tmp_path), include_gone=True), sort="path"))
    assert store.mark_online(str(tmp_path)) == 3


def test_labels_for_the_trainer(store: Store) -> None:
    rng = np.random.default_rng(4)
    s = synthetic_suggestion("/lib/l.jpg", rng, aspects=(parse_aspect("4:5"),))
    store.record_suggestion(s, "hl")
    a = store.add_label("/lib/l.jpg", "accept")
    r = store.add_label("/lib/l.jpg", "reject", rank=2, aspect="4:5")
    b = store.add_label("/lib/l.jpg", "box", box=(10, 20, 3000, 2500), source="server")
    p = store.add_label("/lib/l.jpg", "prefer", rank=3, other_rank=1, aspect="grid")
    labs = {lab.id: lab for lab in store.labels()}
    assert labs[a].box == s.best().box and labs[a].kind == "accept"
    second = next(c for c in s.crops if c.aspect == "4:5" and c.rank == 2)
    assert labs[r].box == second.box and labs[r].aspect == "4:5" and labs[r].rank == 2
    assert labs[b].box == (10, 20, 3000, 2500) and labs[b].source == "server"
    g3 = next(c for c in s.crops if c.aspect == "grid" and c.rank == 3)
    g1 = next(c for c in s.crops if c.aspect == "grid" and c.rank == 1)
    assert labs[p].box == g3.box and labs[p].other_box == g1.box
    assert labs[p].width == 4000 and labs[p].run_id is not None
    assert [lab.id for lab in store.labels(kinds=["box"])] == [b]
    assert [lab.id for lab in store.labels(source="server")] == [b]
    with pytest.raises(ConfigError, match="not inside"):
        store.add_label("/lib/l.jpg", "box", box=(0, 0, 5000, 100))
    with pytest.raises(ConfigError, match="rank 999"):
        store.add_label("/lib/l.jpg", "accept", rank=999)
    with pytest.raises(ConfigError, match="unknown label kind"):
        store.add_label("/lib/l.jpg", "love")
    assert len(store.photo_detail("/lib/l.jpg").labels) == 4


def test_model_versions(store: Store) -> None:
    base = store.register_model_version("paper", "/m/base.pt", "a" * 64, metrics={"srcc": 0.8}, activate=True)
    assert store.register_model_version("paper", "/m/base.pt", "a" * 64) == base  # idempotent per sha256
    child = store.register_model_version("personal-1", "/m/p1.pt", "b" * 64, parent_id=base,
                                         data_summary={"labels": 120}, metrics={"agreement": 0.7})
    assert store.active_model_version().id == base
    assert store.set_active_model("bbbb").id == child
    act = store.active_model_version()
    assert act.id == child and act.parent_id == base and act.data_summary == {"labels": 120}
    assert [m.active for m in store.model_versions()] == [False, True]
    with pytest.raises(StoreError, match="not registered"):
        store.set_active_model("nope")
