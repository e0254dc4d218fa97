"""The suggest pipeline: walking folders, batching, per-photo errors, ranking and explanations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.photos import save_with_orientation, subject_photo

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.scoring.base import ScoreResult
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.suggest import build_suggestion, iter_photo_paths, suggest_images, suggest_paths


def test_iter_photo_paths_walks_and_skips(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    for name in ["a.JPG", "b.png", "sub/c.HEIC", "sub/d.tiff", "notes.txt", ".e.jpg", "a.JPG.xmp",
                 "f.jpg.part", "g.tmp", "sub/.hidden/h.jpg", "~$i.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_photo_paths([tmp_path])]
    assert found == ["a.JPG", "b.png", "sub/c.HEIC", "sub/d.tiff"]
    assert [p.name for p in iter_photo_paths([tmp_path], recursive=False)] == ["a.JPG", "b.png"]
    # a file named directly is always yielded, whatever its name
    assert list(iter_photo_paths([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


def test_suggest_paths_keeps_order_and_reports_errors(tmp_path: Path) -> None:
    good1, good2 = tmp_path / "1.jpg", tmp_path / "3.jpg"
    subject_photo(300, 200).save(good1, "JPEG")
    subject_photo(200, 300).save(good2, "JPEG")
    bad = tmp_path / "2.jpg"
    bad.write_text("not a photo")
    missing = tmp_path / "nope.jpg"
    paths = [good1, bad, missing, good2]
    for batch_size in (1, 2, 8):
        out = list(suggest_paths(paths, HeuristicScorer(), [parse_aspect("1:1")], batch_size=batch_size))
        assert [s.path for s in out] == [str(p) for p in paths]
        assert [s.ok for s in out] == [True, False, False, True]
        assert "not an image" in (out[1].error or "") and "no such file" in (out[2].error or "")
        assert all(s.scorer == "heuristic" for s in out)


def test_a_failing_scorer_fails_only_its_photo(tmp_path: Path) -> None:
    class Picky(HeuristicScorer):
        def score(self, images, candidates):  # type: ignore[no-untyped-def]
            if any(li.info.width == 123 for li in images):
                raise RuntimeError("cannot score width 123")
            return super().score(images, candidates)

    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    subject_photo(123, 100).save(a, "JPEG")
    subject_photo(200, 100).save(b, "JPEG")
    out = list(suggest_paths([a, b], Picky(), batch_size=8))
    assert [s.ok for s in out] == [False, True]
    assert "cannot score width 123" in (out[0].error or "")


def test_build_suggestion_ranks_and_explains(tmp_path: Path) -> None:
    p = tmp_path / "p.jpg"
    subject_photo(400, 300).save(p, "JPEG")
    li = load_image(p)
    cs = generate_candidates(400, 300, [parse_aspect("1:1")])
    n = len(cs)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=n)
    elements = rng.uniform(size=(n, 10))
    s = build_suggestion(li, cs, ScoreResult(scores, elements), HeuristicScorer())
    assert s.ok and s.full_frame is not None and s.full_frame.aspect == "full"
    full = cs.full_index
    for group in ("grid", "1:1"):
        crops = [c for c in s.crops if c.aspect == group]
        assert sorted(c.rank for c in crops) == list(range(1, len(crops) + 1))
        best = min(crops, key=lambda c: c.rank)
        assert best.score == max(c.score for c in crops)
    unit = np.std(np.delete(elements, full, axis=0), axis=0)
    for i, c in enumerate(s.crops):
        assert c.improvement == pytest.approx(c.score - s.full_frame.score)
        if c.aspect == "grid":  # no subjects: the guard leaves the free grid's scores alone
            assert c.score == pytest.approx(scores[i])
        if i == full:
            continue
        change = elements[i] - elements[full]
        rel = np.abs(change) / unit
        top = [k for j, k in enumerate(np.argsort(-rel)[:3]) if j == 0 or rel[k] >= 0.25]
        assert [e.change for e in c.explanation] == pytest.approx(change[top].tolist())
        assert c.changes == pytest.approx(change.tolist())
    assert s.best() is not None and s.best("1:1").aspect == "1:1"  # type: ignore[union-attr]


def test_suggest_images_one_batched_call(tmp_path: Path) -> None:
    calls = []

    class Counting(HeuristicScorer):
        def score(self, images, candidates):  # type: ignore[no-untyped-def]
            calls.append(len(images))
            return super().score(images, candidates)

    imgs = []
    for k in range(3):
        p = tmp_path / f"{k}.jpg"
        subject_photo(200 + 50 * k, 200).save(p, "JPEG")
        imgs.append(load_image(p))
    out = suggest_images(imgs, Counting(), [parse_aspect("4:5")])
    assert calls == [3] and len(out) == 3 and all(s.ok for s in out)


def _best_boxes(paths: list[Path]) -> set[tuple[str, tuple[int, int, int, int]]]:
    out = list(suggest_paths(paths, HeuristicScorer(), [parse_aspect("1:1"), parse_aspect("16:9")]))
    assert all(s.ok for s in out), [s.error for s in out]
    boxes = set()
    for s in out:
        for aspect in s.aspects():
            boxes.add((aspect, s.best(aspect).box))  # type: ignore[union-attr]
    return boxes


def test_eight_orientations_give_the_same_upright_box(tmp_path: Path) -> None:
    upright = subject_photo(480, 320, center=(0.7, 0.35))
    paths = [save_with_orientation(upright, tmp_path / f"o{o}.jpg", o) for o in range(1, 9)]
    boxes = _best_boxes(paths)
    # one best box per candidate set, shared by all eight files
    assert len(boxes) == 3, boxes


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
def test_corpus_orientation_files_give_the_same_box(corpus_dir: Path, kind: str) -> None:
    """The corpus's eight files show the same scene upright, each with its own big digit 1..8
    drawn on it, so the pixels (and near-tied scores) differ a little between them: the best
    boxes must overlap strongly (exact equality is shown by the synthetic test above)."""
    paths = [corpus_dir / "jpg" / "orientation" / f"{kind}_{o}.jpg" for o in range(1, 9)]
    out = list(suggest_paths(paths, HeuristicScorer(), [parse_aspect("1:1"), parse_aspect("16:9")]))
    assert all(s.ok for s in out)
    sizes = {(s.info.width, s.info.height) for s in out if s.info}
    assert sizes == ({(600, 450)} if kind == "landscape" else {(450, 600)})
    grid = [s.best("grid").box for s in out]  # type: ignore[union-attr]
    assert min(_iou(a, b) for a in grid for b in grid) >= 0.8, grid
    for aspect in ("1:1", "16:9"):
        boxes = [s.best(aspect).box for s in out]  # type: ignore[union-attr]
        # The subject stage sees the digit too: portrait_1's thin "1" lies on the waterfall and
        # joins it in the saliency map, a genuinely different subject box. Every other file
        # must agree with the rest.
        agreeing = [a for a in boxes if sum(_iou(a, b) >= 0.5 for b in boxes) >= len(boxes) - 1]
        assert len(agreeing) >= len(boxes) - 1, boxes
