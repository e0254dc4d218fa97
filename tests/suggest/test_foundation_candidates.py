"""Candidates: GAIC grid anchors, exact aspect sets with bounded counts, the full frame once."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipcrop_plugin.candidates import (
    ASPECT_MAX,
    AspectRatio,
    aspect_boxes,
    generate_candidates,
    grid_boxes,
    parse_aspect,
)
from clipcrop_plugin.errors import ConfigError

RATIOS = st.sampled_from(["1:1", "4:5", "3:2", "16:9", "9:16", "2:3", "5:4", "21:9", "1:3", "7:2"]).map(parse_aspect)


@pytest.mark.parametrize(
    ("h", "w", "count"),
    [(256, 256, 90), (256, 352, 87), (256, 384, 83), (384, 256, 83), (256, 448, 72), (256, 512, 38), (256, 640, 7)],
)
def test_gaic_grid_counts_match_the_paper_code(h: int, w: int, count: int) -> None:
    assert len(grid_boxes(w, h)) == count


def test_grid_corners_follow_gaic() -> None:
    boxes = grid_boxes(1200, 1200)
    step = 100
    assert set(boxes[:, 0].tolist()) == {int((i + 0.5) * step) for i in range(4)}
    assert set(boxes[:, 2].tolist()) == {int((i + 0.5) * step) for i in range(8, 12)}
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.all(w * h > 0.5 * 1200 * 1200 - 1)
    assert np.all((w / h > 0.5) & (w / h < 2))


@pytest.mark.parametrize("text,expected", [("1:1", (1, 1)), ("4:5", (4, 5)), (" 16x9 ", (16, 9)), ("3/2", (3, 2)), ("square", (1, 1))])
def test_parse_aspect(text: str, expected: tuple[int, int]) -> None:
    assert parse_aspect(text) == AspectRatio(*expected)


@pytest.mark.parametrize("text", ["", "16", "a:b", "0:1", "-1:2", "1.5:1", "1:1000", "4:3:2"])
def test_parse_aspect_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_aspect(text)
    assert "\n" not in str(info.value)


def test_panorama_gets_aspect_candidates_and_full_frame() -> None:
    cs = generate_candidates(10000, 500, [parse_aspect("1:1"), parse_aspect("16:9")])
    groups = Counter(cs.groups)
    assert groups["grid"] == 0 and groups["full"] == 1
    assert 0 < groups["1:1"] <= ASPECT_MAX and 0 < groups["16:9"] <= ASPECT_MAX
    sq = cs.boxes[np.asarray(cs.groups) == "1:1"]
    assert np.all(sq[:, 2] - sq[:, 0] == 500) and np.all(sq[:, 3] - sq[:, 1] == 500)


def test_ratio_that_does_not_fit_still_yields_its_largest_box() -> None:
    # 1:1 covers 5% of a 10000x500 panorama: below the 40% floor, yet the largest box is kept.
    boxes = aspect_boxes(10000, 500, parse_aspect("1:1"))
    assert len(boxes) >= 1 and (boxes[:, 3] - boxes[:, 1]).max() == 500


def test_duplicate_aspects_are_merged_and_order_is_stable() -> None:
    cs = generate_candidates(800, 600, [parse_aspect("4:5"), parse_aspect("1:1"), parse_aspect("4:5")])
    assert list(dict.fromkeys(cs.groups)) == ["grid", "4:5", "1:1", "full"]
    assert cs.groups[cs.full_index] == "full" and tuple(cs.boxes[cs.full_index]) == (0, 0, 800, 600)


def test_no_grid() -> None:
    cs = generate_candidates(800, 600, [parse_aspect("1:1")], grid=False)
    assert "grid" not in cs.groups and cs.groups.count("full") == 1


@settings(max_examples=150, deadline=None)
@given(
    w=st.integers(1, 20000),
    h=st.integers(1, 20000),
    ratios=st.lists(RATIOS, max_size=4),
    grid=st.booleans(),
)
def test_candidate_properties(w: int, h: int, ratios: list[AspectRatio], grid: bool) -> None:
    cs = generate_candidates(w, h, ratios, grid=grid)
    b = cs.boxes
    assert b.dtype == np.int64 and b.shape == (len(cs.groups), 4)
    # every box inside the image and non-empty
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 2] <= w) and np.all(b[:, 3] <= h)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    counts = Counter(cs.groups)
    assert counts["full"] == 1 and tuple(b[cs.full_index]) == (0, 0, w, h)
    assert counts["grid"] <= 90 and (grid or counts["grid"] == 0)
    for ratio in {r.name: r for r in ratios}.values():
        sel = b[np.asarray(cs.groups) == ratio.name]
        assert 1 <= len(sel) <= ASPECT_MAX
        bw, bh = sel[:, 2] - sel[:, 0], sel[:, 3] - sel[:, 1]
        # exact ratio within one pixel, whenever one pixel row of that ratio fits at all
        if w >= ratio.value and h >= 1 / ratio.value:
            assert np.all(np.abs(bw - ratio.value * bh) <= 1.0 + 1e-9), (w, h, ratio)
        # area >= 40% of the image, or the largest box when the ratio cannot reach 40%
        area = bw * bh
        assert np.all((area >= 0.4 * w * h - max(w, h) * 2) | (area == area.max()))
    assert len(b) == len(np.unique(np.c_[b, [hash(g) for g in cs.groups]], axis=0))


@settings(max_examples=60, deadline=None)
@given(w=st.integers(100, 20000), h=st.integers(100, 20000))
def test_grid_for_ordinary_shapes(w: int, h: int) -> None:
    boxes = grid_boxes(w, h)
    if 0.5 < w / h < 2:
        assert len(boxes) > 0
    if len(boxes):
        bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        # pixel aspect strictly in (0.5, 2), allowing a pixel of rounding
        assert np.all(bw + 2 > 0.5 * bh) and np.all(bw < 2 * bh + 2)
