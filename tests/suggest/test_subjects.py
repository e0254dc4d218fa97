"""The subject stage: real detections on real photos, degenerate frames, failures, threads."""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from support import ROOT

from clipcrop_plugin import subjects as subjects_mod
from clipcrop_plugin.imaging import LoadedImage, load_image
from clipcrop_plugin.results import PhotoInfo, Subject
from clipcrop_plugin.subjects import KINDS, SubjectDetector, detect_subjects, iou, main_salient_region

TRUTH = json.loads((Path(__file__).parent / "data" / "subjects_by_eye.json").read_text())


def _skimage_photo(tmp_path: Path, name: str, orientation: int = 1) -> Path:
    data = pytest.importorskip("skimage.data")
    from support.photos import save_with_orientation

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    return save_with_orientation(img, tmp_path / f"{name}.jpg", orientation)


def _inside(inner: tuple[int, ...], outer: list[int], tol: float = 0.9) -> bool:
    ix = max(0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    return ix * iy >= tol * (inner[2] - inner[0]) * (inner[3] - inner[1])


def _check_valid(found: list[Subject], width: int, height: int) -> None:
    for s in found:
        assert s.kind in KINDS
        x1, y1, x2, y2 = s.box
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, s
        assert 0.0 <= s.score <= 1.0


def test_astronaut_face_inside_her_head(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    truth = TRUTH["astronaut"]
    loaded = load_image(_skimage_photo(tmp_path, "astronaut"), min_side=192)
    found = detect_subjects(loaded)
    _check_valid(found, 512, 512)
    faces = [s for s in found if s.kind in ("face", "profile_face")]
    assert len(faces) == 1, found  # one face, not the flag, the patch or the helmet
    assert iou(faces[0].box, truth["face"]) >= 0.5, faces
    assert _inside(faces[0].box, truth["head"]), faces
    assert faces[0].score > 0.3


def test_astronaut_found_the_same_on_an_exif_rotated_file(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    truth = TRUTH["astronaut"]
    loaded = load_image(_skimage_photo(tmp_path, "astronaut", orientation=6), min_side=192)
    assert loaded.info.orientation == 6
    faces = [s for s in detect_subjects(loaded) if s.kind == "face"]
    assert faces and iou(faces[0].box, truth["face"]) >= 0.5, faces


def test_the_cats_head_is_the_main_salient_region(tmp_path: Path) -> None:
    truth = TRUTH["chelsea"]
    # Orientation 3 as in the sample library: boxes come back upright.
    loaded = load_image(_skimage_photo(tmp_path, "chelsea", orientation=3), min_side=192)
    found = detect_subjects(loaded)
    _check_valid(found, 451, 300)
    salient = [s for s in found if s.kind == "salient"]
    assert len(salient) == 1  # ONE box around the main region
    assert iou(salient[0].box, truth["head"]) >= 0.5, salient
    assert not [s for s in found if s.kind in ("face", "profile_face", "person")], found  # no people in a cat


def test_salient_region_is_one_object_not_the_frame() -> None:
    rgb = np.full((200, 300, 3), 0.45, dtype=np.float32)
    rgb += np.random.default_rng(0).normal(0, 0.01, rgb.shape).astype(np.float32)
    rgb[120:170, 200:260] = (0.9, 0.15, 0.1)  # a red object, lower right
    box, score = main_salient_region(np.clip(rgb, 0, 1))  # type: ignore[misc]
    assert iou(box, (200, 120, 260, 170)) >= 0.5, box
    assert 0.3 < score <= 1.0


@pytest.mark.parametrize(
    "size, color",
    [((1, 1), (0, 0, 0)), ((1, 20000), (128, 128, 128)), ((20000, 1), (200, 10, 10)), ((640, 480), (0, 0, 0)),
     ((640, 480), (90, 140, 200)), ((3, 3), (255, 255, 255)), ((32, 2000), (0, 0, 0))],
)
def test_flat_tiny_and_extreme_frames_have_no_subjects(tmp_path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path = tmp_path / "flat.png"
    Image.new("RGB", size, color).save(path)
    loaded = load_image(path, min_side=192)
    assert detect_subjects(loaded) == []


def test_noise_panorama_gives_valid_boxes_or_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "pano.png"
    Image.fromarray(rng.integers(0, 255, (40, 6000, 3), dtype=np.uint8)).save(path)
    loaded = load_image(path, min_side=192)
    _check_valid(detect_subjects(loaded), 6000, 40)


def test_profile_faces_are_found_looking_either_way(corpus_dir: Path, tmp_path: Path) -> None:
    """The profile cascade knows one direction: the mirrored pass finds the other, at the mirrored
    place (the cascades' path, used without the mtcnn wheel)."""
    pytest.importorskip("cv2")
    src = corpus_dir / "jpg" / "exif-org" / "sony-cybershot.jpg"
    if not src.is_file():
        pytest.skip(f"{src} not in the corpus")
    upright = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
    mirrored = tmp_path / "mirrored.png"
    upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    straight = tmp_path / "straight.png"
    upright.save(straight)
    cascades = SubjectDetector(use_mtcnn=False)
    a = [s for s in cascades.detect(load_image(straight, min_side=192)) if s.kind == "profile_face"]
    b = [s for s in cascades.detect(load_image(mirrored, min_side=192)) if s.kind == "profile_face"]
    assert a and b
    w = upright.width
    back = [(w - s.box[2], s.box[1], w - s.box[0], s.box[3]) for s in b]
    assert max(iou(a[0].box, m) for m in back) >= 0.7, (a, back)


def test_without_opencv_saliency_only_and_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    monkeypatch.setattr(subjects_mod, "_cv2_module", subjects_mod._UNSET)
    det = SubjectDetector()
    path = _skimage_photo(tmp_path, "astronaut")
    with caplog.at_level(logging.WARNING, logger="clipcrop"):
        first = det.detect(load_image(path, min_side=192))
        second = SubjectDetector().detect(load_image(path, min_side=192))
    assert [s.kind for s in first] == ["salient"] and first == second
    warnings = [r for r in caplog.records if "subject detection" in r.getMessage()]
    assert len(warnings) == 1 and "clipcrop[subjects]" in warnings[0].getMessage()
    assert not det.has_opencv


def test_one_detector_shared_by_threads_gives_the_same_answers(tmp_path: Path) -> None:
    loaded = [load_image(_skimage_photo(tmp_path, n), min_side=192) for n in ("astronaut", "chelsea", "coffee")]
    det = SubjectDetector()
    expected = [det.detect(li) for li in loaded]
    results: list[list[list[Subject]]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append([det.detect(li) for li in loaded for _ in range(2)][::2])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r == expected for r in results) and len(results) == 4


def test_every_sample_and_corpus_photo_gets_valid_subjects(corpus_dir: Path) -> None:
    paths = sorted(p for p in (corpus_dir / "jpg").rglob("*.jpg"))[:40]
    checked = 0
    for p in paths:
        try:
            loaded = load_image(p, min_side=192)
        except Exception:
            continue
        _check_valid(detect_subjects(loaded), loaded.info.width, loaded.info.height)
        checked += 1
    assert checked >= 20


def test_a_standing_person_implies_her_head(corpus_dir: Path) -> None:
    """A real camera photo: the person box and a face inside its top, both near the boxes drawn by eye."""
    pytest.importorskip("cv2")
    truth = TRUTH["sony-cybershot"]
    src = corpus_dir / truth["corpus"]
    if not src.is_file():
        pytest.skip(f"{src} not in the corpus")
    found = detect_subjects(load_image(src, min_side=192))
    _check_valid(found, *truth["size"])
    people = [s for s in found if s.kind == "person"]
    faces = [s for s in found if s.kind in ("face", "profile_face")]
    assert len(people) == 1 and iou(people[0].box, truth["person"]) >= 0.5, found
    assert faces and iou(faces[0].box, truth["face"]) >= 0.5, found
    assert _inside(faces[0].box, list(people[0].box))


def test_pipeline_fills_subjects_and_isolates_a_detector_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from clipcrop_plugin import suggest as suggest_mod
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer

    for n in ("astronaut", "coffee", "chelsea"):
        _skimage_photo(tmp_path, n)
    real = suggest_mod.detect_subjects

    def flaky(loaded):  # type: ignore[no-untyped-def]
        if loaded.info.path.endswith("coffee.jpg"):
            raise RuntimeError("cascade exploded")
        return real(loaded)

    monkeypatch.setattr(suggest_mod, "detect_subjects", flaky)
    with caplog.at_level(logging.WARNING, logger="clipcrop"):
        out = list(suggest_mod.suggest_paths([tmp_path], HeuristicScorer(), batch_size=8))
    by_name = {Path(s.path).name: s for s in out}
    assert all(s.ok for s in out) and len(out) == 3
    coffee = by_name["coffee.jpg"]
    assert coffee.subjects == [] and "cascade exploded" in (coffee.subjects_error or "")
    assert coffee.best() is not None  # still scored
    assert by_name["chelsea.jpg"].subjects and by_name["chelsea.jpg"].subjects_error is None
    d = coffee.to_dict()
    assert d["subjects"] == [] and "subject detection failed" in d["subjects_error"]
    astro = by_name["astronaut.jpg"].to_dict()
    assert {"kind", "box", "score"} <= set(astro["subjects"][0]) and "subjects_error" not in astro
    assert sum("cascade exploded" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("w", [1, 19, 20, 63, 64, 65, 100])
def test_sizes_around_every_detectors_window_never_crash(w: int) -> None:
    """OpenCV's HOG crashes the process on an image smaller than its 64x128 window, and cascades
    refuse images smaller than theirs: every size near those limits must give valid boxes."""
    rng = np.random.default_rng(w)
    for h in (1, 20, 21, 127, 128, 129, 192):
        arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        arr[..., 0] = arr[..., 0] // 2 + 120  # reddish noise reads as skin: every detector runs
        info = PhotoInfo("noise.png", w * 3, h * 3, w * 3, h * 3, 1, False, "PNG")
        _check_valid(detect_subjects(LoadedImage(Image.fromarray(arr), info)), w * 3, h * 3)


_BARE = r"""
import importlib.abc, logging, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cv2", "scipy"):
            raise ImportError(f"{name} is blocked: a base install without the extras")
sys.meta_path.insert(0, Block())
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.suggest import suggest_paths
out = list(suggest_paths(sys.argv[1:], HeuristicScorer()))
for s in out:
    print(s.ok, [x.kind for x in s.subjects], s.subjects_error)
"""


def test_a_base_install_without_opencv_or_scipy_finds_the_salient_region(tmp_path: Path) -> None:
    import subprocess

    paths = [str(_skimage_photo(tmp_path, n)) for n in ("astronaut", "chelsea")]
    res = subprocess.run([sys.executable, "-c", _BARE, *paths], capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["True ['salient'] None", "True ['salient'] None"], res.stdout
    warnings = [line for line in res.stderr.splitlines() if "subject detection" in line]
    assert len(warnings) == 1 and "clipcrop[subjects]" in warnings[0], res.stderr


def test_numpy_labelling_matches_opencvs_components() -> None:
    """The fallback a base install uses gives the same regions as OpenCV's 4-connected labelling."""
    cv2 = pytest.importorskip("cv2")
    from clipcrop_plugin.subjects import label_regions

    rng = np.random.default_rng(5)
    for _ in range(60):
        mask = rng.random((int(rng.integers(1, 70)), int(rng.integers(1, 70)))) < rng.random()
        ours, n = label_regions(mask)
        m, theirs = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
        assert n == m - 1
        # Same partition: every region of one is exactly one region of the other.
        assert len(set(zip(ours[mask].tolist(), theirs[mask].tolist()))) == n
        assert (ours[~mask] == 0).all()


def test_the_small_faces_of_a_group_are_found(corpus_dir: Path) -> None:
    """A real wedding photo: the bride's and groom's faces are ~1/14 of the photo's height, under
    the regular search's smallest face; the small-face pass finds both, inside the group."""
    pytest.importorskip("cv2")
    src = corpus_dir / "jpg" / "exif-org" / "canon-ixus.jpg"
    if not src.is_file():
        pytest.skip(f"{src} not in the corpus")
    loaded = load_image(src, min_side=192)
    w, h = loaded.info.width, loaded.info.height
    faces = [s for s in detect_subjects(loaded) if s.kind == "face"]
    group = (0.33 * w, 0.40 * h, 0.64 * w, 1.0 * h)  # drawn by eye (benchmarks/data/quality_boxes.json)
    inside = [f for f in faces if _inside(f.box, list(group))]
    assert len(inside) >= 2, faces
    assert all((f.box[3] - f.box[1]) < h / 8 for f in inside)


def test_small_faces_are_not_made_up_from_skin_coloured_texture(tmp_path: Path) -> None:
    """Face-sized skin-coloured blobs on wood-like texture: the stricter small-face pass finds none."""
    pytest.importorskip("cv2")
    rng = np.random.default_rng(11)
    img = np.zeros((480, 640, 3), dtype=np.float32)
    img[...] = (150, 105, 70)
    img += rng.normal(0, 12, img.shape)
    for _ in range(12):
        cx, cy, r = rng.integers(40, 600), rng.integers(40, 440), rng.integers(8, 18)
        yy, xx = np.ogrid[:480, :640]
        img[(xx - cx) ** 2 + ((yy - cy) * 0.8) ** 2 <= r * r] = (215, 160, 130)
    path = tmp_path / "wood.jpg"
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
    assert not [s for s in detect_subjects(load_image(path, min_side=192)) if s.kind == "face"]
