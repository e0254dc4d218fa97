"""The subject stage's newer behaviour: background-aware saliency, confirmed people, the read-ahead pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipcrop_plugin import subjects as subjects_mod
from clipcrop_plugin import suggest as suggest_mod
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.subjects import detect_subjects, main_salient_region


def _landscape(w: int = 300, h: int = 200, seed: int = 0) -> np.ndarray:
    """Dark textured ground under a bright, flat sky band along the whole top edge."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((h, w, 3), dtype=np.float32)
    rgb[:] = (0.18, 0.3, 0.15)
    rgb += rng.normal(0, 0.03, rgb.shape).astype(np.float32)
    rgb[: h // 4] = (0.85, 0.9, 0.97)  # the sky: bright, distinct from the mean colour, on the edge
    return np.clip(rgb, 0, 1)


def test_a_sky_band_on_the_edge_is_not_the_subject_a_compact_object_is() -> None:
    rgb = _landscape()
    yy, xx = np.mgrid[0:200, 0:300]
    ball = (xx - 190) ** 2 + (yy - 130) ** 2 <= 22**2
    rgb[ball] = (0.85, 0.2, 0.15)
    found = main_salient_region(rgb)
    assert found is not None
    (x1, y1, x2, y2), score = found
    assert x1 <= 170 and x2 >= 210 and y1 <= 110 and y2 >= 150, found  # holds the ball
    assert y1 > 50, found  # and not the sky above it
    assert (x2 - x1) * (y2 - y1) < 0.2 * 300 * 200, found
    assert score >= 0.5  # one clear object: the guard trusts it


def test_an_object_cut_by_the_frame_edge_gets_a_box_to_that_edge() -> None:
    """The closing that joins an object's parts must not erode it off the frame's edge."""
    rgb = np.full((200, 300, 3), 0.4, dtype=np.float32)
    rgb += np.random.default_rng(1).normal(0, 0.02, rgb.shape).astype(np.float32)
    rgb[120:200, 130:190] = (0.9, 0.8, 0.1)  # a yellow block standing on the bottom edge
    found = main_salient_region(np.clip(rgb, 0, 1))
    assert found is not None
    (x1, y1, x2, y2), _ = found
    assert y2 == pytest.approx(200, abs=1e-6), found
    assert x1 <= 135 and x2 >= 185 and y1 <= 125, found


def test_two_equal_rivals_are_less_trusted_than_one_object() -> None:
    rgb = np.full((200, 300, 3), 0.45, dtype=np.float32)
    rgb += np.random.default_rng(2).normal(0, 0.02, rgb.shape).astype(np.float32)
    one = rgb.copy()
    one[80:120, 60:100] = (0.9, 0.15, 0.1)
    two = one.copy()
    two[80:120, 200:240] = (0.9, 0.15, 0.1)
    a, b = main_salient_region(np.clip(one, 0, 1)), main_salient_region(np.clip(two, 0, 1))
    assert a is not None and b is not None
    assert b[1] < a[1], (a, b)


def test_hog_people_on_a_skin_coloured_frame_need_a_face(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HOG hit with a weak margin on a frame that is all 'skin' (sandstone) and has no face is
    not a person; the same hit with a face in its head region is."""
    pytest.importorskip("cv2")
    rng = np.random.default_rng(4)
    rgb = np.clip(rng.normal((200, 150, 120), 12, (192, 256, 3)), 0, 255).astype(np.uint8)  # sandstone
    detector = subjects_mod.SubjectDetector(use_mtcnn=False)  # the cascades' path: _faces is faked below
    cv2, frontal, profile, hog, _ = detector._models()

    class FakeHog:
        def __init__(self) -> None:
            self.calls = 0

        def detectMultiScale(self, img, **kw):  # type: ignore[no-untyped-def]  # noqa: N802
            self.calls += 1
            return np.array([[10, 10, 64, 128]]), np.array([0.7])

    fake = FakeHog()
    found = detector._opencv((cv2, frontal, profile, fake, False), rgb)
    assert not [f for f in found if f[0] == "person"]
    # With a face found, HOG runs even on a skin-coloured frame and the person is kept.
    monkeypatch.setattr(detector, "_faces", staticmethod(
        lambda *a, **k: [("face", (20.0, 15.0, 40.0, 35.0), 0.8)] if a[2].shape[0] > 40 else []))
    found = detector._opencv((cv2, frontal, profile, fake, False), rgb)
    assert [f for f in found if f[0] == "person"] and fake.calls >= 1


def test_read_ahead_keeps_walk_order_failures_and_subjects(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Intake and detection run ahead on the subject thread: order, per-photo failures, subjects and
    the batch boundaries must be what they were."""
    rng = np.random.default_rng(7)
    names = []
    for i in range(11):
        name = f"p{i:02d}.jpg"
        if i in (3, 8):
            (tmp_path / name).write_bytes(b"not a jpeg at all")
        else:
            arr = (_landscape(240, 160, seed=i) * 255).astype(np.uint8)
            arr[60:120, 40 + 10 * i : 90 + 10 * i] = rng.integers(150, 255, 3)
            Image.fromarray(arr).save(tmp_path / name, quality=90)
        names.append(name)
    with caplog.at_level(logging.WARNING, logger="clipcrop"):
        out = list(suggest_mod.suggest_paths([tmp_path], HeuristicScorer(), batch_size=4))
    assert [Path(s.path).name for s in out] == names
    assert [s.ok for s in out] == [i not in (3, 8) for i in range(11)]
    for s in out:
        if s.ok:
            assert s.subjects == detect_subjects(load_image(s.path, min_side=HeuristicScorer.min_side))
            assert s.subjects_error is None
        else:
            assert s.error and "p0" in s.error


def test_read_ahead_raises_a_walk_error_after_the_photos_before_it(tmp_path: Path) -> None:
    Image.fromarray((_landscape(240, 160) * 255).astype(np.uint8)).save(tmp_path / "a.jpg")

    def paths():  # type: ignore[no-untyped-def]
        yield tmp_path / "a.jpg"
        raise PermissionError("cannot list the next folder")

    got = []
    with pytest.raises(PermissionError):
        for s in suggest_mod.suggest_paths(paths(), HeuristicScorer(), batch_size=8):
            got.append(s)
    assert len(got) == 1 and got[0].ok
