"""The heuristic scorer and the scorer registry (entry points, auto fallback)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from support.photos import subject_photo

from clipcrop_plugin.candidates import generate_candidates, parse_aspect
from clipcrop_plugin.config import Settings
from clipcrop_plugin.elements import ELEMENT_NAMES
from clipcrop_plugin.errors import ConfigError
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.scoring.base import Scorer
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.scoring.registry import load_scorer, scorer_names


@pytest.fixture()
def subject_jpeg(tmp_path: Path) -> Path:
    p = tmp_path / "subject.jpg"
    subject_photo(600, 400, center=(0.7, 0.4)).save(p, "JPEG", quality=92)
    return p


def test_heuristic_shapes_and_ranges(subject_jpeg: Path) -> None:
    li = load_image(subject_jpeg, min_side=HeuristicScorer.min_side)
    cs = generate_candidates(li.info.width, li.info.height, [parse_aspect("1:1"), parse_aspect("16:9")])
    scorer = HeuristicScorer()
    assert isinstance(scorer, Scorer) and scorer.name == "heuristic" and scorer.weights_hash is None
    (res,) = scorer.score([li], [cs])
    assert res.scores.shape == (len(cs),) and np.all(np.isfinite(res.scores))
    assert res.elements is not None and res.elements.shape == (len(cs), len(ELEMENT_NAMES))
    assert np.all((res.elements >= 0) & (res.elements <= 1))


def test_heuristic_keeps_the_subject(subject_jpeg: Path) -> None:
    li = load_image(subject_jpeg)
    cs = generate_candidates(600, 400, [parse_aspect("1:1")], grid=False)
    (res,) = HeuristicScorer().score([li], [cs])
    squares = np.flatnonzero(np.asarray(cs.groups) == "1:1")
    best = cs.boxes[squares[np.argmax(res.scores[squares])]]
    worst = cs.boxes[squares[np.argmin(res.scores[squares])]]
    subject_x = 0.7 * 600
    assert best[0] < subject_x < best[2], best  # the subject is inside the best square
    assert not (worst[0] < subject_x - 40 and subject_x + 40 < worst[2]), worst


def test_heuristic_is_deterministic_and_batch_independent(subject_jpeg: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.jpg"
    subject_photo(300, 500, center=(0.3, 0.6)).save(other, "JPEG")
    a, b = load_image(subject_jpeg), load_image(other)
    ca = generate_candidates(a.info.width, a.info.height)
    cb = generate_candidates(b.info.width, b.info.height)
    scorer = HeuristicScorer()
    together = scorer.score([a, b], [ca, cb])
    alone = scorer.score([b], [cb])
    np.testing.assert_allclose(together[1].scores, alone[0].scores)


def test_heuristic_on_flat_and_tiny_images(tmp_path: Path) -> None:
    from PIL import Image

    for size in ((1, 1), (3, 200), (512, 512)):
        p = tmp_path / f"flat{size[0]}x{size[1]}.png"
        Image.new("RGB", size, (128, 128, 128)).save(p)
        li = load_image(p)
        cs = generate_candidates(*size, [parse_aspect("1:1")])
        (res,) = HeuristicScorer().score([li], [cs])
        assert np.all(np.isfinite(res.scores)) and np.all(np.isfinite(res.elements))


def test_summed_area_tables_match_direct_sums(subject_jpeg: Path) -> None:
    from clipcrop_plugin.scoring import heuristic as H

    maps = H.feature_maps(load_image(subject_jpeg).image)
    sat = H._tables(maps)
    h, w = maps["interest"].shape
    rng = np.random.default_rng(3)
    x1 = rng.integers(0, w - 1, 50)
    y1 = rng.integers(0, h - 1, 50)
    x2 = np.minimum(w, x1 + rng.integers(1, w, 50))
    y2 = np.minimum(h, y1 + rng.integers(1, h, 50))
    sums = H._box_sums(sat, x1, y1, x2, y2)
    direct = np.array([maps["interest"][b:d, a:c].sum() for a, b, c, d in zip(x1, y1, x2, y2)])
    np.testing.assert_allclose(sums[0], direct, rtol=1e-3, atol=1e-3)
    direct_d = np.array([maps["detail"][b:d, a:c].sum() for a, b, c, d in zip(x1, y1, x2, y2)])
    np.testing.assert_allclose(sums[6], direct_d, rtol=1e-3, atol=1e-3)


def test_registry_names_and_unknown() -> None:
    assert "heuristic" in scorer_names()
    assert isinstance(load_scorer("heuristic", settings=Settings()), HeuristicScorer)
    with pytest.raises(ConfigError) as info:
        load_scorer("nope", settings=Settings())
    assert "known:" in str(info.value) and "heuristic" in str(info.value)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_auto_falls_back_to_heuristic_with_one_warning(tmp_path: Path) -> None:
    settings = Settings(model_dir=str(tmp_path / "empty-models"))
    logger = logging.getLogger("clipcrop")
    cap = _Capture()
    logger.addHandler(cap)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        scorer = load_scorer("auto", settings=settings)
    finally:
        logger.removeHandler(cap)
        logger.setLevel(old)
    assert scorer.name == "heuristic"
    warnings = [r for r in cap.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    msg = warnings[0].getMessage()
    assert "\n" not in msg and "no CLIP weights" in msg and "clipcrop models import" in msg and "--weights" in msg


def test_third_party_scorer_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fakeplug_mod.py").write_text(
        "import numpy as np\n"
        "from clipcrop_plugin.scoring.base import ScoreResult\n"
        "class ConstantScorer:\n"
        "    name = 'constant'\n    weights_hash = None\n    device = 'cpu'\n"
        "    @classmethod\n    def create(cls, settings, device='auto', weights=None):\n        return cls()\n"
        "    def score(self, images, candidates):\n"
        "        return [ScoreResult(np.arange(len(c), dtype=float)) for c in candidates]\n"
        "class Broken:\n"
        "    @classmethod\n    def create(cls, settings, device='auto', weights=None):\n"
        "        raise RuntimeError('boom')\n"
    )
    dist = tmp_path / "fakeplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[clipcrop.scorers]\nconstant = fakeplug_mod:ConstantScorer\nbroken = fakeplug_mod:Broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fakeplug_mod", raising=False)
    assert "constant" in scorer_names()
    scorer = load_scorer("constant", settings=Settings())
    assert scorer.name == "constant"
    with pytest.raises(ConfigError) as info:
        load_scorer("broken", settings=Settings())
    assert "could not start" in str(info.value) and "boom" in str(info.value)


def test_a_candidate_equal_to_the_full_frame_scores_like_it(tmp_path: Path) -> None:
    p = tmp_path / "square.jpg"
    subject_photo(400, 400).save(p, "JPEG")
    li = load_image(p)
    cs = generate_candidates(400, 400, [parse_aspect("1:1")])
    (res,) = HeuristicScorer().score([li], [cs])
    same = np.flatnonzero(np.all(cs.boxes == cs.boxes[cs.full_index], axis=1))
    assert len(same) == 2  # the 1:1 set's largest box and the full frame itself
    assert res.scores[same[0]] == res.scores[same[1]]


def test_auto_with_explicit_weights_that_nobody_accepts_is_an_error(tmp_path: Path) -> None:
    from clipcrop_plugin.errors import WeightsError

    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not weights")
    with pytest.raises(WeightsError):
        load_scorer("auto", settings=Settings(model_dir=str(tmp_path / "m")), weights=str(bogus))
