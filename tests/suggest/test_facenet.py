"""MTCNN faces (clipcrop_plugin/facenet.py): the weights the mtcnn wheel ships, run by OpenCV's DNN.

The networks are checked against a plain numpy evaluation of the same Keras arrays (the layout
conversions, kernels HWIO -> OIHW and the transposed flatten before the dense layers, are where
a mistake would hide), then on real photos: a frontal face with its landmarks where a face has
them, a face turned three quarters in warm light that the cascades miss, and a mirrored photo
whose face is found at the mirrored place turning the other way.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageOps

from clipcrop_plugin import facenet
from clipcrop_plugin import subjects as subjects_mod
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.results import box_iou
from clipcrop_plugin.subjects import SubjectDetector

cv2 = pytest.importorskip("cv2")
if facenet.weights_dir() is None:
    pytest.skip("the mtcnn wheel is not installed (pip install 'clipcrop[subjects]')", allow_module_level=True)


# A numpy evaluation of the Keras networks, written from the layer list alone (valid 3x3 convs,
# per-channel PReLU, stride-2 max pooling padded at the end as Keras' "same" does).
def _conv(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    kh, kw, c, o = k.shape
    win = sliding_window_view(x, (kh, kw), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
    return np.einsum("nhwijc,ijco->nhwo", win, k) + b


def _prelu(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, x * a.reshape(-1))


def _pool(x: np.ndarray, size: int, same: bool) -> np.ndarray:
    n, h, w, c = x.shape
    if same:
        oh, ow = -(-h // 2), -(-w // 2)
        ph, pw = max((oh - 1) * 2 + size - h, 0), max((ow - 1) * 2 + size - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), constant_values=-np.inf)
    return sliding_window_view(x, (size, size), axis=(1, 2))[:, ::2, ::2].max(axis=(-2, -1))


def _dense_in(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 1, 3).reshape(len(x), -1)


def _reference(name: str, w: list[np.ndarray], x: np.ndarray) -> list[np.ndarray]:
    if name == "pnet":
        x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 2, True)
        x = _prelu(_conv(x, w[3], w[4]), w[5])
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        return [_conv(x, w[9], w[10]), _conv(x, w[11], w[12])]
    x = _pool(_prelu(_conv(x, w[0], w[1]), w[2]), 3, True)
    x = _pool(_prelu(_conv(x, w[3], w[4]), w[5]), 3, False)
    if name == "rnet":
        x = _prelu(_conv(x, w[6], w[7]), w[8])
        x = _prelu(_dense_in(x) @ w[9] + w[10], w[11])
        return [x @ w[12] + w[13], x @ w[14] + w[15]]
    x = _pool(_prelu(_conv(x, w[6], w[7]), w[8]), 2, True)
    x = _prelu(_conv(x, w[9], w[10]), w[11])
    x = _prelu(_dense_in(x) @ w[12] + w[13], w[14])
    return [x @ w[15] + w[16], x @ w[17] + w[18], x @ w[19] + w[20]]


@pytest.mark.parametrize("name, shape, outputs", [
    ("pnet", (1, 37, 52, 3), ["reg", "cls"]),  # odd sizes: the pooling's padding shows
    ("rnet", (5, 24, 24, 3), ["reg", "cls"]),
    ("onet", (3, 48, 48, 3), ["reg", "marks", "cls"]),
])
def test_opencv_networks_compute_what_the_keras_layers_do(name: str, shape: tuple[int, ...],
                                                          outputs: list[str]) -> None:
    mtcnn = facenet.load_mtcnn()
    assert mtcnn is not None
    x = np.random.default_rng(3).uniform(-1, 1, shape).astype(np.float32)
    got = facenet._run(facenet._build(cv2, name, mtcnn.arrays[name]), x, outputs)
    want = _reference(name, mtcnn.arrays[name], x)
    for g, r in zip(got, want):
        g = g.transpose(0, 2, 3, 1) if g.ndim == 4 else g  # OpenCV's NCHW back to NHWC
        assert g.shape == r.shape
        np.testing.assert_allclose(g, r, rtol=1e-3, atol=1e-3)


def _skimage(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def test_a_frontal_face_with_its_landmarks() -> None:
    mtcnn = facenet.load_mtcnn()
    assert mtcnn is not None
    rgb = _skimage("astronaut")  # 512 x 512, her face at about x 170-260, y 50-170
    hits = mtcnn.detect(cv2, rgb, 40)
    assert len(hits) == 1 and hits[0].score > 0.99, hits
    face = hits[0]
    x1, y1, x2, y2 = face.box
    assert 150 < x1 < 200 and 230 < x2 < 280 and 40 < y1 < 110 and 140 < y2 < 200, face.box
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lx < nx < rx and max(ly, ry) < ny < min(mly, mry) and mlx < mrx
    assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in face.landmarks)
    assert abs(face.yaw) < 0.2  # she looks at the camera


def test_a_face_turned_in_warm_light_is_found_and_mirrors(corpus_dir: Path, tmp_path: Path) -> None:
    """Two men at a café counter, lit yellow (every wall and the counter pass the skin rule), one
    turned three quarters: the cascades find neither face; MTCNN finds both, the turned one
    turning towards the image's right, and in the mirrored photo at the mirrored place turning left."""
    src = corpus_dir / "jpg" / "exif-org" / "sony-d700.jpg"
    if not src.is_file():
        pytest.skip(f"{src} not in the corpus")
    upright = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
    upright.save(tmp_path / "straight.png")
    upright.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "mirrored.png")
    straight, mirrored = (load_image(tmp_path / n, min_side=192) for n in ("straight.png", "mirrored.png"))

    def faces(det: SubjectDetector, loaded: object) -> list:
        return [s for s in det.detect(loaded) if s.kind in ("face", "profile_face")]  # type: ignore[arg-type]

    assert faces(SubjectDetector(use_mtcnn=False), straight) == []
    found = faces(SubjectDetector(), straight)
    assert len(found) == 2, found
    w = upright.width
    left = min(found, key=lambda s: s.box[0])
    assert left.box[0] < 0.2 * w  # the man on the left, turned
    back = [(w - s.box[2], s.box[1], w - s.box[0], s.box[3]) for s in faces(SubjectDetector(), mirrored)]
    assert len(back) == 2 and all(max(box_iou(s.box, m) for m in back) >= 0.6 for s in found), (found, back)
    # The turn itself, from the landmarks: opposite signs in the two photos.
    mtcnn = facenet.load_mtcnn()
    assert mtcnn is not None
    rgb = np.asarray(straight.image)
    turned = [h for h in mtcnn.detect(cv2, rgb, 12) if h.box[0] < 0.2 * rgb.shape[1]]
    turned_back = [h for h in mtcnn.detect(cv2, np.ascontiguousarray(rgb[:, ::-1]), 12)
                   if h.box[2] > 0.8 * rgb.shape[1]]
    assert turned and turned_back and turned[0].yaw > 0.3 and turned_back[0].yaw < -0.3


def test_without_the_wheel_or_with_broken_weights_the_cascades_find_faces(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    rgb = _skimage("astronaut")
    Image.fromarray(rgb).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png", min_side=192)

    def fresh() -> None:
        monkeypatch.setattr(facenet, "_tried", False)
        monkeypatch.setattr(facenet, "_loaded", None)

    # No wheel: no MTCNN, and the cascades still find her face.
    fresh()
    monkeypatch.setattr(facenet, "weights_dir", lambda: None)
    monkeypatch.setattr(subjects_mod, "weights_dir", lambda: None)
    det = SubjectDetector()
    assert "Haar" in det.describe()
    assert [s for s in det.detect(loaded) if s.kind == "face"]
    # Weight files that are not MTCNN's: one warning, the same fallback, no exception.
    bad = tmp_path / "weights"
    bad.mkdir()
    for n in ("pnet", "rnet", "onet"):
        (bad / f"{n}.lz4").write_bytes(b"not a joblib file")
    fresh()
    monkeypatch.setattr(facenet, "weights_dir", lambda: bad)
    monkeypatch.setattr(subjects_mod, "weights_dir", lambda: bad)
    with caplog.at_level(logging.WARNING, logger="clipcrop"):
        assert facenet.load_mtcnn() is None and facenet.load_mtcnn() is None
    assert len([r for r in caplog.records if "MTCNN" in r.getMessage()]) == 1
    assert [s for s in SubjectDetector().detect(loaded) if s.kind == "face"]
    fresh()  # the next test loads the real weights again


def test_mtcnn_faces_are_square_and_inside_the_skin_region() -> None:
    """The subject stage's use of MTCNN: boxes widened to square (the guard's face proportions),
    searched inside the skin regions' bounding box only, offsets back in the frame's pixels."""
    mtcnn = facenet.load_mtcnn()
    assert mtcnn is not None
    rgb = _skimage("astronaut")
    small = np.asarray(Image.fromarray(rgb).resize((192, 192), Image.Resampling.BILINEAR))
    whole = subjects_mod._mtcnn_faces(cv2, mtcnn, small, [(0, 0, 192, 192)])
    part = subjects_mod._mtcnn_faces(cv2, mtcnn, small, [(40, 0, 150, 110)])
    assert len(whole) == 1 and len(part) == 1
    (x1, y1, x2, y2) = whole[0][1]
    assert abs((x2 - x1) - (y2 - y1)) < 1.5
    assert box_iou(whole[0][1], part[0][1]) > 0.8  # the same face, in the frame's coordinates
    assert subjects_mod._mtcnn_faces(cv2, mtcnn, small, [(150, 120, 192, 192)]) == []  # no face there


def test_the_weights_load_only_for_a_photo_with_skin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A landscape (no skin-coloured region) never loads MTCNN (~0.1 s and ~20 MB per process);
    the first photo with skin does."""
    monkeypatch.setattr(facenet, "_tried", False)
    monkeypatch.setattr(facenet, "_loaded", None)
    rng = np.random.default_rng(5)
    field = np.clip(rng.normal((70, 140, 60), 20, (240, 320, 3)), 0, 255).astype(np.uint8)  # grass
    Image.fromarray(field).save(tmp_path / "field.png")
    det = SubjectDetector()
    det.detect(load_image(tmp_path / "field.png", min_side=192))
    assert facenet._tried is False
    Image.fromarray(_skimage("astronaut")).save(tmp_path / "a.png")
    assert [s for s in det.detect(load_image(tmp_path / "a.png", min_side=192)) if s.kind == "face"]
    assert facenet._tried is True and facenet._loaded is not None
