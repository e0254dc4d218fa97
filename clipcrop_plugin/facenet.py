"""MTCNN face detection (Zhang et al. 2016) with the weights the ``mtcnn`` wheel ships, run by OpenCV.

Why this and not only OpenCV's Haar cascades: the cascades see faces looking at the camera and
strict profiles; a face turned three quarters, tilted, lit by warm light or partly in shadow
(most candid photos) is missed, and a crop then slices it. MTCNN was trained on WIDER FACE, whose
faces are exactly those, and finds them down to ~12 px with the eyes, nose and mouth corners.

The ``mtcnn`` package (MIT, ipazc/mtcnn) runs the networks in TensorFlow; only its weight files
(``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``, joblib-serialized lists of Keras arrays, ~2 MB)
are used here. They are located with :func:`importlib.util.find_spec`, without importing the
package (its ``__init__`` imports TensorFlow). The three small networks are written as Caffe
network descriptions in memory (text for the layers, a protobuf of the weights) and run by
OpenCV's DNN module, which the subject stage has anyway: ~4x faster than numpy matrix products
here, and neither TensorFlow nor torch is needed. Nothing is downloaded: without the package,
:func:`load_mtcnn` returns ``None`` and the subject stage uses the Haar cascades alone.

The pipeline is the paper's: a proposal network (P-Net) slides over an image pyramid, a
refinement network (R-Net) re-scores 24 px crops of its proposals, an output network (O-Net)
scores 48 px crops and places five landmarks. Thresholds 0.7, 0.7, 0.8 (the paper's P-Net
threshold of 0.6 sends twice the proposals to R-Net and found no other face on the corpus).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ClipcropError

log = logging.getLogger("clipcrop")

_STRIDE, _CELL = 2, 12  # P-Net's output grid: one 12 px window every 2 px of the scaled image
_PYRAMID_FACTOR = 0.709  # each pyramid level is half the area of the one before (the paper's)
_THRESHOLDS = (0.7, 0.7, 0.8)
_MAX_PROPOSALS = 64  # R-Net costs ~0.1 ms a proposal; the weakest beyond this are not re-scored

Net = list[np.ndarray]


@dataclass(frozen=True)
class FaceHit:
    """One face: ``box`` (x1, y1, x2, y2) and ``landmarks`` (eye left, eye right, nose, mouth
    left, mouth right; (x, y) each, as seen in the image) in input pixels; ``score`` the O-Net
    probability."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...]

    @property
    def yaw(self) -> float:
        """Which way the face turns, from its landmarks: the nose's offset from the eyes' midpoint
        in eye distances; > 0 when the nose is to the image's right of the eyes (the person looks
        towards the image's right), ~0 for a face looking at the camera."""
        (lx, _), (rx, _), (nx, _) = self.landmarks[:3]
        eyes = max(abs(rx - lx), 1e-6)
        return (nx - (lx + rx) / 2.0) / eyes


def weights_dir() -> Path | None:
    """The folder holding the ``mtcnn`` wheel's weight files, or ``None`` when it is not installed."""
    try:
        spec = importlib.util.find_spec("mtcnn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        d = Path(root) / "assets" / "weights"
        if all((d / f"{n}.lz4").is_file() for n in ("pnet", "rnet", "onet")):
            return d
    return None


def _load_net(path: Path, shapes: list[tuple[int, ...]]) -> Net:
    import joblib  # a dependency of the mtcnn wheel; its files are joblib + lz4

    arrays = joblib.load(path)
    if not isinstance(arrays, list) or [tuple(np.shape(a)) for a in arrays] != shapes:
        raise ClipcropError(f"{path} does not hold the MTCNN weights this version expects")
    return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]


# The layer shapes of the three networks (Keras order: conv kernels HWIO, then bias, PReLU alpha).
_PNET = [(3, 3, 3, 10), (10,), (1, 1, 10), (3, 3, 10, 16), (16,), (1, 1, 16), (3, 3, 16, 32), (32,), (1, 1, 32),
         (1, 1, 32, 4), (4,), (1, 1, 32, 2), (2,)]
_RNET = [(3, 3, 3, 28), (28,), (1, 1, 28), (3, 3, 28, 48), (48,), (1, 1, 48), (2, 2, 48, 64), (64,), (1, 1, 64),
         (576, 128), (128,), (128,), (128, 4), (4,), (128, 2), (2,)]
_ONET = [(3, 3, 3, 32), (32,), (1, 1, 32), (3, 3, 32, 64), (64,), (1, 1, 64), (3, 3, 64, 64), (64,), (1, 1, 64),
         (2, 2, 64, 128), (128,), (1, 1, 128), (1152, 256), (256,), (256,), (256, 4), (4,), (256, 10), (10,),
         (256, 2), (2,)]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _caffemodel(layers: list[tuple[str, list[np.ndarray]]]) -> bytes:
    """A Caffe ``NetParameter`` holding only the named layers' blobs (OpenCV matches them to the
    prototxt's layers by name): ``layer`` = 100, its ``name`` = 1 and ``blobs`` = 7; a blob's
    ``shape`` = 7 (packed ``dim`` = 1) and packed float ``data`` = 5."""
    out = bytearray()
    for name, blobs in layers:
        body = _field(1, name.encode())
        for a in blobs:
            a = np.ascontiguousarray(a, dtype="<f4")
            shape = _field(1, b"".join(_varint(d) for d in a.shape))
            body += _field(7, _field(7, shape) + _field(5, a.tobytes()))
        out += _field(100, body)
    return bytes(out)


def _conv(n: int, k: int) -> str:
    return f"convolution_param {{ num_output: {n} kernel_size: {k} }}"


def _pool(k: int) -> str:
    # Caffe's pooling rounds its output size up, as the networks were trained (Keras "same").
    return f"pooling_param {{ pool: MAX kernel_size: {k} stride: 2 }}"


_FLAT = "permute_param { order: 0 order: 3 order: 2 order: 1 }"  # the dense layers read (W, H, C)


def _fc(n: int) -> str:
    return f"inner_product_param {{ num_output: {n} }}"


def _two_blocks(c1: int, c2: int) -> list[str]:
    """The opening of R-Net and O-Net: two 3x3 convolutions, each with its PReLU and a 3x3 pool."""
    return [
        f"Convolution conv1 data c1 {_conv(c1, 3)}", "PReLU prelu1 c1 c1", f"Pooling pool1 c1 p1 {_pool(3)}",
        f"Convolution conv2 p1 c2 {_conv(c2, 3)}", "PReLU prelu2 c2 c2", f"Pooling pool2 c2 p2 {_pool(3)}",
    ]


# Per network: its input size and its layers, in the order of the weight files' arrays (a
# Convolution or InnerProduct takes two, kernel and bias; a PReLU one, its slopes).
_NETS: dict[str, tuple[int, list[str]]] = {
    "pnet": (12, [
        f"Convolution conv1 data c1 {_conv(10, 3)}", "PReLU prelu1 c1 c1", f"Pooling pool1 c1 p1 {_pool(2)}",
        f"Convolution conv2 p1 c2 {_conv(16, 3)}", "PReLU prelu2 c2 c2",
        f"Convolution conv3 c2 c3 {_conv(32, 3)}", "PReLU prelu3 c3 c3",
        f"Convolution reg c3 reg {_conv(4, 1)}", f"Convolution cls c3 cls {_conv(2, 1)}",
    ]),
    "rnet": (24, [
        *_two_blocks(28, 48),
        f"Convolution conv3 p2 c3 {_conv(64, 2)}", "PReLU prelu3 c3 c3", f"Permute flat c3 f {_FLAT}",
        f"InnerProduct fc4 f d4 {_fc(128)}", "PReLU prelu4 d4 d4",
        f"InnerProduct reg d4 reg {_fc(4)}", f"InnerProduct cls d4 cls {_fc(2)}",
    ]),
    "onet": (48, [
        *_two_blocks(32, 64),
        f"Convolution conv3 p2 c3 {_conv(64, 3)}", "PReLU prelu3 c3 c3", f"Pooling pool3 c3 p3 {_pool(2)}",
        f"Convolution conv4 p3 c4 {_conv(128, 2)}", "PReLU prelu4 c4 c4", f"Permute flat c4 f {_FLAT}",
        f"InnerProduct fc5 f d5 {_fc(256)}", "PReLU prelu5 d5 d5",
        f"InnerProduct reg d5 reg {_fc(4)}", f"InnerProduct marks d5 marks {_fc(10)}",
        f"InnerProduct cls d5 cls {_fc(2)}",
    ]),
}
_BLOBS = {"Convolution": 2, "InnerProduct": 2, "PReLU": 1}  # arrays per layer kind


def _caffe_blob(a: np.ndarray) -> np.ndarray:
    """A Keras array in Caffe's layout: conv kernels HWIO -> OIHW, dense (in, out) -> (out, in)."""
    if a.ndim == 4:
        return a.transpose(3, 2, 0, 1)
    if a.ndim == 2:
        return a.T
    return a.reshape(-1)  # biases, and PReLU slopes (one per channel)


def _build(cv2: Any, name: str, arrays: Net) -> Any:
    """OpenCV's network ``name`` with ``arrays`` as its weights: one pass over the layer rows
    (``kind name bottom top [params]``) writes the description and hands each layer its arrays."""
    size, body = _NETS[name]
    lines = [f'name: "{name}"', 'input: "data"', f"input_shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }}"]
    layers, at = [], 0
    for row in body:
        kind, layer, bottom, top, *params = row.split(" ", 4)
        extra = params[0] if params else ""
        lines.append(f'layer {{ name: "{layer}" type: "{kind}" bottom: "{bottom}" top: "{top}" {extra} }}')
        n = _BLOBS.get(kind, 0)
        if n:
            layers.append((layer, [_caffe_blob(a) for a in arrays[at : at + n]]))
            at += n
    proto = "\n".join(lines).encode()
    model = _caffemodel(layers)
    return cv2.dnn.readNetFromCaffe(np.frombuffer(proto, np.uint8), np.frombuffer(model, np.uint8))


def _run(net: Any, x: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
    """The named outputs of ``net`` for an (N, H, W, 3) batch."""
    net.setInput(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return list(net.forward(outputs))


def _softmax_face(logits: np.ndarray) -> np.ndarray:
    """Probability of "face" from two-way logits on axis 1."""
    return 1.0 / (1.0 + np.exp(logits[:, 0] - logits[:, 1]))


def _nms(cv2: Any, boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (IoU above ``threshold``), best first."""
    if not len(boxes):
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float64)
    keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float32), 0.0, threshold)
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def _nms_by_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Like :func:`_nms` with the overlap measured over the smaller box (a face box inside a
    larger one of the same face goes): the last stage's few boxes only."""
    order = np.argsort(-scores)
    area = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), axis=1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        wh = np.clip(np.minimum(boxes[i, 2:], boxes[rest, 2:]) - np.maximum(boxes[i, :2], boxes[rest, :2]), 0, None)
        inter = wh[:, 0] * wh[:, 1]
        order = rest[inter / np.maximum(np.minimum(area[i], area[rest]), 1e-9) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _crops(cv2: Any, img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) resized crops of ``img`` (normalized), zero outside the image."""
    h, w = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes).astype(np.int64).tolist()):
        sx1, sy1, sx2, sy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 - x1 < 2 or y2 - y1 < 2 or sx2 <= sx1 or sy2 <= sy1:
            continue
        if (sx1, sy1, sx2, sy2) == (x1, y1, x2, y2):
            patch = img[y1:y2, x1:x2]
        else:  # a box reaching past the image's edge: black there
            patch = np.zeros((y2 - y1, x2 - x1, 3), np.float32)
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = img[sy1:sy2, sx1:sx2]
        interp = cv2.INTER_AREA if x2 - x1 > size else cv2.INTER_LINEAR
        out[k] = cv2.resize(patch, (size, size), interpolation=interp)
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + reg * np.stack([w, h, w, h], axis=1)


class MTCNN:
    """The three networks' weights, loaded once per process; OpenCV's networks are built from
    them per thread (a ``cv2.dnn.Net`` is not safe to share between threads, and building one
    takes ~2 ms), so :meth:`detect` may be called from any thread."""

    def __init__(self, directory: Path) -> None:
        self.arrays = {
            "pnet": _load_net(directory / "pnet.lz4", _PNET),
            "rnet": _load_net(directory / "rnet.lz4", _RNET),
            "onet": _load_net(directory / "onet.lz4", _ONET),
        }
        self._local = threading.local()

    def _nets(self, cv2: Any) -> dict[str, Any]:
        nets = getattr(self._local, "nets", None)
        if nets is None:
            nets = self._local.nets = {name: _build(cv2, name, arrays) for name, arrays in self.arrays.items()}
        return nets

    def detect(self, cv2: Any, rgb: np.ndarray, min_face: int) -> list[FaceHit]:
        """The faces of an (H, W, 3) uint8 RGB image at least ``min_face`` px tall, best first."""
        h, w = rgb.shape[:2]
        min_face = max(_CELL, min_face)
        if min(h, w) < min_face:
            return []
        nets = self._nets(cv2)
        img = (rgb.astype(np.float32) - 127.5) * (1 / 128.0)
        boxes = self._proposals(cv2, nets["pnet"], img, min_face)
        if not len(boxes):
            return []
        # R-Net: re-score square crops of the proposals at 24 px.
        boxes = _square(boxes)
        reg, logits = _run(nets["rnet"], _crops(cv2, img, boxes, 24), ["reg", "cls"])
        prob = _softmax_face(logits)
        keep = prob > _THRESHOLDS[1]
        boxes, reg, prob = boxes[keep], reg[keep], prob[keep]
        if not len(boxes):
            return []
        keep = _nms(cv2, boxes, prob, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
        # O-Net: the final score, the box and the landmarks, from 48 px crops.
        reg, marks, logits = _run(nets["onet"], _crops(cv2, img, boxes, 48), ["reg", "marks", "cls"])
        prob = _softmax_face(logits)
        keep = prob > _THRESHOLDS[2]
        boxes, reg, marks, prob = boxes[keep], reg[keep], marks[keep], prob[keep]
        if not len(boxes):
            return []
        bw, bh = (boxes[:, 2] - boxes[:, 0])[:, None], (boxes[:, 3] - boxes[:, 1])[:, None]
        xs, ys = boxes[:, :1] + bw * marks[:, :5], boxes[:, 1:2] + bh * marks[:, 5:]
        boxes = _regress(boxes, reg)
        out = []
        for i in _nms_by_min(boxes, prob, 0.7):
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            box = (max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out.append(FaceHit(box, float(prob[i]), tuple((float(xs[i, k]), float(ys[i, k])) for k in range(5))))
        return out

    @staticmethod
    def _proposals(cv2: Any, pnet: Any, img: np.ndarray, min_face: int) -> np.ndarray:
        """P-Net over the pyramid: candidate boxes (image pixels), best first, after NMS."""
        h, w = img.shape[:2]
        scale = _CELL / min_face
        all_boxes, all_scores = [], []
        while min(h, w) * scale >= _CELL:
            sh, sw = max(_CELL, math.ceil(h * scale)), max(_CELL, math.ceil(w * scale))
            level = img if (sh, sw) == (h, w) else cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
            reg, logits = _run(pnet, level[None], ["reg", "cls"])
            prob = _softmax_face(logits)[0]
            ys, xs = np.nonzero(prob > _THRESHOLDS[0])
            if len(ys):
                cells = np.stack([xs * _STRIDE, ys * _STRIDE, xs * _STRIDE + _CELL, ys * _STRIDE + _CELL], axis=1)
                boxes = _regress(cells.astype(np.float32), reg[0][:, ys, xs].T) / scale
                sc = prob[ys, xs]
                keep = _nms(cv2, boxes, sc, 0.5)
                all_boxes.append(boxes[keep])
                all_scores.append(sc[keep])
            scale *= _PYRAMID_FACTOR
        if not all_boxes:
            return np.zeros((0, 4), np.float32)
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        return boxes[_nms(cv2, boxes, scores, 0.7)[:_MAX_PROPOSALS]]


_loaded: MTCNN | None = None
_tried = False
_lock = threading.Lock()


def load_mtcnn() -> MTCNN | None:
    """The process's MTCNN (loaded on first use), or ``None`` without the ``mtcnn`` package or
    when its weight files cannot be read (said once: the subject stage then uses the cascades)."""
    global _loaded, _tried
    with _lock:
        if not _tried:
            _tried = True
            d = weights_dir()
            try:
                _loaded = MTCNN(d) if d is not None else None
            except Exception as exc:  # a broken install must not stop every photo's subject stage
                log.warning("subject detection: MTCNN's weights in %s could not be read (%s); faces are "
                            "found with OpenCV's cascades instead", d, exc)
                _loaded = None
        return _loaded
