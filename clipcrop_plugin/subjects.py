"""The subject stage: faces, profile faces, people and the main salient object, found once per photo.

Runs on the small working copy that intake made (``LoadedImage.image``), never on the file, and
returns :class:`~clipcrop_plugin.results.Subject` boxes in upright full-resolution pixels like
every other box. Every scorer and the crop guard read these boxes; nothing here scores crops.

Detectors (all weights ship inside a wheel; nothing is downloaded):

- ``face``: OpenCV's Haar cascade ``haarcascade_frontalface_alt2`` (bundled in
  ``opencv-python-headless`` 4.x under ``cv2.data``; OpenCV 5 wheels no longer bundle cascades).
- ``profile_face``: ``haarcascade_profileface``, run on the image and on its mirror image, since
  the cascade only knows faces looking one way.
- ``person``: OpenCV's HOG + linear SVM people detector (its coefficients are compiled into
  OpenCV). A person with no face found inside gets a second, more sensitive face search in the top
  of its box, so a person box implies its head region whenever a head can be seen.
- ``salient``: one box around the most salient connected region of a spectral-residual, colour
  distinctness (from the frame's borders and its mean colour) and sharpness saliency map, regions
  spread along the frame's edge (sky, sea, walls) weighed down; its confidence falls when the
  region barely stands out or another region is nearly as strong, so the guard's trust threshold
  (0.5) separates a clear object from a guess. OpenCV filters when installed, numpy and Pillow
  otherwise (always available).
- People found by HOG are kept only when a face, skin that stands out from the frame or a very
  sure SVM margin confirms them (HOG alone fires on trees and statues).

Without OpenCV only ``salient`` subjects are found, and one warning per process says so.
Blank, flat or tiny images give no subjects, never an error.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from .facenet import MTCNN, load_mtcnn, weights_dir
from .imaging import LoadedImage
from .results import Box, Subject
from .results import box_iou as iou

log = logging.getLogger("clipcrop")

Found = tuple[str, tuple[float, float, float, float], float]  # kind, box in detection-image px, score

KINDS = ("face", "profile_face", "person", "salient", "content")

# The detection image's short side is capped here: Haar cascades cost grows with the pixel
# count, and the heuristic scorer's working copy (192) is what this was tuned on.
DETECT_SIDE = 192
# Smallest face searched, as a fraction of the face search copy's short side (and never below
# the cascades' own 20 px window): smaller faces cost most of the time and rarely decide a crop
# of the whole photo.
MIN_FACE_FRACTION = 1 / 8
# Faces are searched on a copy with this short side: a face smaller than MIN_FACE_FRACTION of it
# (20 px, the cascades' window) is not found.
FACE_SIDE = 144
# Faces down to this fraction of the detection image's short side are looked for in a second pass
# around small skin blobs (SubjectDetector._small_faces): the faces of a group photo.
SMALL_FACE_FRACTION = 1 / 20
_SMALL_FACE_NEIGHBOURS = 3
_SMALL_FACE_SKIN = 0.3  # share of skin-coloured pixels a small face's box must hold
_SMALL_FACE_ROIS = 4  # at most this many blobs are searched (the largest first)
# MTCNN (when the mtcnn wheel is installed, see facenet.py): the smallest face searched, as a
# share of the detection image's short side (14 px at DETECT_SIDE; smaller ones are left to the
# cascade's small-face pass, which costs far less than MTCNN's finest levels), the O-Net probability a face
# needs, and the turn (nose offset in eye distances) from which it counts as a profile.
MTCNN_MIN_FACE = 1 / 14
_MTCNN_SURE = 0.9
_MTCNN_PROFILE_YAW = 0.35
_SCALE_FACTOR = 1.2
_PROFILE_SCALE_FACTOR = 1.2
_FACE_NEIGHBOURS = 3
_PROFILE_NEIGHBOURS = 4
_FACE_IOU = 0.3  # frontal and profile boxes overlapping this much are one face
_PERSON_IOU = 0.5
_HOG_WIN = (64, 128)
_PERSON_SURE = 0.75  # a HOG margin of 1.5: kept without a face or skin to confirm it
_HOG_SKIN_MAX = 0.25  # frames with more skin-coloured area than this are searched for people only with a face
_PERSON_SKIN = 0.02  # share of skin-coloured pixels in a person's head region that confirms it
# The profile search runs on skin regions up to this share of the frame (see _opencv).
_PROFILE_ROI_SHARE = 0.4
# Around a skin blob, the face search adds this much of the smallest face (and of the blob's
# size / 2) on every side: the cascade window holds hair and chin beyond the skin.
_ROI_MARGIN = 0.5
_MIN_SALIENT_SIDE = 8  # images smaller than this have no meaningful salient region
_MAX_SALIENT_AREA = 0.9  # a "salient region" covering the whole frame is not a subject
# A salient region's confidence keeps this share when a second region is as strong as it (and
# all of it when it stands alone).
_DOMINANCE_FLOOR = 0.4
_MEAN_DISTINCT_WEIGHT = 0.5  # weight of "unlike the mean colour" beside "unlike the borders"
_EDGE_SIGMA = 1.0  # boundary connectivity at which a region's weight falls to exp(-1/2)
_FLAT_STD = 2.0 / 255.0  # luminance spread below which a frame is flat (all black, one colour)
# Uniform borders (letterbox bands, a scan's black edges, a white frame): see picture_box().
_BAND_STD = 4.0  # the frame's edge line of a border: its largest per-channel spread, in 8-bit levels
_BAND_COLOUR = 20.0  # a border pixel is within this of the edge line's colour (largest channel)
_BAND_LINE = 0.95  # share of a line's pixels of the border's colour for the line to be border
_BAND_MIN = 0.01  # a border is at least this share of the side it spans (and 2 px)
_BAND_EDGE = 0.5  # share of the first picture line that must differ clearly from the border
_BAND_EDGE_DIFF = 24.0  # what "clearly" means, in 8-bit levels (largest channel)
_PICTURE_MIN = 0.35  # the picture inside the border keeps at least this share of each side

_UNSET = object()
_cv2_module: Any = _UNSET  # the import is tried once per process
_cv2_lock = threading.Lock()


def _cv2() -> Any | None:
    """OpenCV when it is installed and bundles its cascades, else ``None`` (warned once)."""
    global _cv2_module
    with _cv2_lock:
        if _cv2_module is _UNSET:
            try:
                import cv2

                if not hasattr(cv2, "data") or not hasattr(cv2, "CascadeClassifier"):
                    raise ImportError("this cv2 bundles no cascades (opencv-python-headless 4.x does)")
                _cv2_module = cv2
            except Exception as exc:  # a missing or broken wheel only means "saliency only"
                _cv2_module = None
                log.warning(
                    "subject detection: OpenCV is not available (%s); faces and people are not detected, "
                    "only the most salient region (pip install 'clipcrop[subjects]')",
                    exc,
                )
        return _cv2_module


def _confidence(neighbours: float, k: float = 6.0) -> float:
    """Map a cascade's neighbour count (how many overlapping windows agreed) into [0, 1)."""
    return float(1.0 - math.exp(-max(float(neighbours), 0.0) / k))




def _inside(inner: Sequence[float], outer: Sequence[float], tol: float = 0.8) -> bool:
    """Whether at least ``tol`` of ``inner``'s area lies within ``outer``."""
    ix = max(0.0, min(inner[2], outer[2]) - max(inner[0], outer[0]))
    iy = max(0.0, min(inner[3], outer[3]) - max(inner[1], outer[1]))
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return area > 0 and ix * iy >= tol * area


def nms(found: list[Found], threshold: float) -> list[Found]:
    """Greedy non-maximum suppression: keep the best-scored box of every overlapping cluster."""
    kept: list[Found] = []
    for item in sorted(found, key=lambda f: -f[2]):
        if all(iou(item[1], k[1]) < threshold for k in kept):
            kept.append(item)
    return kept


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges repeated (OpenCV's box filter, else separable running sums)."""
    if r <= 0:
        return a
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.blur(np.ascontiguousarray(a, dtype=np.float32), (2 * r + 1, 2 * r + 1),
                        borderType=cv2.BORDER_REPLICATE)
    out = a.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        out = (np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis) - np.take(c, np.arange(n), axis=axis)) / (
            2 * r + 1
        )
    return out.astype(np.float32)


def _shrink(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average ``a`` (H, W) or (H, W, C) float32 down to ``size`` = (width, height)."""
    cv2 = _cv2()
    if cv2 is not None:
        return cv2.resize(np.ascontiguousarray(a, dtype=np.float32), size, interpolation=cv2.INTER_AREA)
    if a.ndim == 2:
        return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, Image.Resampling.BOX),
                          dtype=np.float32)
    return np.stack([_shrink(a[..., c], size) for c in range(a.shape[2])], axis=-1)


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation (outside the image counts as empty)."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion (outside the image counts as empty, as in a closing's border)."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    out = np.ones_like(mask)
    for dy in range(3):
        for dx in range(3):
            out &= p[dy : dy + h, dx : dx + w]
    return out


def _close(mask: np.ndarray, iterations: int) -> np.ndarray:
    for _ in range(iterations):
        mask = _dilate(mask)
    for _ in range(iterations):
        mask = _erode(mask)
    return mask


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of a boolean mask: (labels 1..n, 0 outside; n).

    Min-label propagation with pointer jumping, in numpy: the saliency map is 64 px, so this
    costs well under a millisecond and needs no scipy or OpenCV.
    """
    h, w = mask.shape
    size = h * w
    flat = mask.ravel()
    lab = np.where(flat, np.arange(size), size)
    while True:
        grid = lab.reshape(h, w)
        p = np.pad(grid, 1, constant_values=size)
        m = np.minimum.reduce([grid, p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]]).ravel()
        m = np.where(flat, m, size)
        # Pointer jumping: a label is a pixel index; follow it to that pixel's own label.
        inside = m < size
        m[inside] = np.minimum(m[inside], m[m[inside]])
        if np.array_equal(m, lab):
            break
        lab = m
    roots, inverse = np.unique(lab, return_inverse=True)
    n = int(np.sum(roots < size))
    out = np.where(flat, inverse + 1, 0).reshape(h, w)
    return out, n


_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
# Opponent colour axes (luminance, red-green, yellow-blue): distances here follow perceived colour
# differences closely enough for "does this stand out", without a full Lab conversion.
_OPPONENT = np.array([[0.2126, 1.0, 0.5], [0.7152, -1.0, 0.5], [0.0722, 0.0, -1.0]], dtype=np.float32)
_BORDER_SEGMENTS = 4  # each side of the frame is split into this many background samples
_BORDER_NEAREST = 4  # a pixel is compared with its k-th most similar border sample (see below)


def _border_contrast(opp: np.ndarray) -> np.ndarray:
    """How unlike the frame's borders each pixel's colour is, (H, W) from an (H, W, 3) opponent image.

    Sky, walls, sea and floor reach the frame's edges; a subject rarely fills more than a few
    stretches of them (boundary prior, Wei et al. 2012). Each pixel's distance to the mean colours of
    16 border stretches is sorted and the k-th smallest kept: a region resembling many stretches is
    background, one that touches the border in a stretch or three (a person cut by the bottom
    edge) still stands out. Unlike the distance from the mean colour, this does not make a bright
    sky salient in a dark landscape.
    """
    h, w = opp.shape[:2]
    t = max(1, round(0.06 * min(h, w)))
    samples = []
    for k in range(_BORDER_SEGMENTS):
        xs = slice(k * w // _BORDER_SEGMENTS, max((k + 1) * w // _BORDER_SEGMENTS, k * w // _BORDER_SEGMENTS + 1))
        ys = slice(k * h // _BORDER_SEGMENTS, max((k + 1) * h // _BORDER_SEGMENTS, k * h // _BORDER_SEGMENTS + 1))
        samples += [opp[:t, xs], opp[h - t :, xs], opp[ys, :t], opp[ys, w - t :]]
    means = np.stack([s.reshape(-1, 3).mean(axis=0) for s in samples if s.size])
    flat = opp.reshape(-1, 3)
    # Squared distances to every sample at once: |c|^2 - 2 c.m + |m|^2 (one small matrix product).
    d2 = (flat * flat).sum(axis=1)[:, None] - 2.0 * (flat @ means.T) + (means * means).sum(axis=1)[None, :]
    k = min(_BORDER_NEAREST, d2.shape[-1]) - 1
    return np.sqrt(np.maximum(np.partition(d2, k, axis=-1)[:, k], 0.0)).reshape(h, w)


def saliency_map(rgb: np.ndarray) -> np.ndarray:
    """A saliency map in [0, 1] of an (H, W, 3) float RGB image in [0, 1], at 64 px on the long side.

    Spectral residual (Hou & Zhang 2007) finds what stands out from the image's own statistics;
    border contrast (:func:`_border_contrast`) finds what differs in colour from the background the
    frame's edges show; sharpness finds the part in focus; a mild centre prior damps the border
    responses spectral residual is prone to. OpenCV does the filtering when it is installed
    (several times faster), numpy and Pillow otherwise.
    """
    h, w = rgb.shape[:2]
    f = 64 / max(h, w)
    sw, sh = max(1, round(w * f)), max(1, round(h * f))
    small = _shrink(rgb, (sw, sh))
    lum = small @ _LUMA
    spec = np.fft.fft2(lum)
    log_amp = np.log(np.abs(spec) + 1e-6).astype(np.float32)
    residual = log_amp - _box_blur(log_amp, 1)
    sr = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
    sr = _box_blur(_box_blur(sr.astype(np.float32), 1), 1)
    opp = small @ _OPPONENT
    # Both measures of colour distinctness: from the border's colours (keeps a bright sky from
    # winning) and from the frame's mean colour (keeps a white waterfall that shares the sky's
    # colour).
    from_mean = np.sqrt(((opp - opp.reshape(-1, 3).mean(axis=0)) ** 2).sum(axis=-1))
    distinct = _norm(_border_contrast(opp)) + _MEAN_DISTINCT_WEIGHT * _norm(from_mean)
    # Sharpness: the subject is usually the part in focus (pets, portraits, macro), measured
    # on the full-size image where background blur is still visible, then pooled down.
    full_lum = rgb @ _LUMA
    gx = np.abs(np.diff(full_lum, axis=1, prepend=full_lum[:, :1]))
    gy = np.abs(np.diff(full_lum, axis=0, prepend=full_lum[:1, :]))
    sharp = _box_blur(_shrink(gx + gy, (sw, sh)), 1)
    yy = (np.arange(sh, dtype=np.float32) + 0.5) / sh - 0.5
    xx = (np.arange(sw, dtype=np.float32) + 0.5) / sw - 0.5
    prior = 0.5 + 0.5 * np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * 0.3**2))
    out = (0.35 * _norm(sr) + 0.35 * _norm(distinct) + 0.3 * _norm(sharp)) * prior
    return _norm(out)


def _norm(a: np.ndarray) -> np.ndarray:
    """``a`` scaled to [0, 1] between its minimum and its 99.5th percentile (a few hot pixels do
    not flatten the rest)."""
    if not a.size:
        return np.zeros_like(a, dtype=np.float32)
    flat = a.ravel()
    # The order statistic itself (np.partition), not np.percentile's interpolation: 5x cheaper.
    hi = float(np.partition(flat, int(0.995 * (flat.size - 1)))[int(0.995 * (flat.size - 1))])
    lo = float(flat.min())
    if hi - lo <= 1e-8:
        return np.zeros_like(a, dtype=np.float32)
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def main_salient_region(rgb: np.ndarray) -> tuple[tuple[float, float, float, float], float] | None:
    """The box (in ``rgb`` pixels) and confidence of the most salient connected region, or ``None``.

    ``None`` for flat frames, images too small to have a region, and maps whose salient region
    is (nearly) the whole frame.
    """
    h, w = rgb.shape[:2]
    if min(h, w) < _MIN_SALIENT_SIDE:
        return None
    # Every 4th pixel each way is plenty to tell a flat frame, at a sixteenth of the cost.
    if float(rgb[::4, ::4].reshape(-1, rgb.shape[-1]).std(axis=0).max()) < _FLAT_STD:
        return None
    sal = saliency_map(rgb)
    sh, sw = sal.shape
    if float(sal.max()) <= 0.0:
        return None
    # Threshold relative to the map's own spread: the subject is what stands well above the mean.
    thr = max(0.4, float(sal.mean() + 0.5 * sal.std()))
    # Closing joins the parts of one object (a cat's eyes and nose) into one region.
    # The mask is padded by repeating its edge first: a closing treats the outside as empty,
    # which would erode two cells off every region that reaches the frame's edge.
    mask = _close(np.pad(sal >= thr, 2, mode="edge"), iterations=2)[2:-2, 2:-2]
    cv2 = _cv2()
    if cv2 is not None:  # the same 4-connected components, ~10x faster than the numpy fallback
        n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
        n -= 1
    else:
        labels, n = label_regions(mask)
    if n == 0:
        return None
    mass = np.bincount(labels.ravel(), weights=sal.ravel(), minlength=n + 1)[1:]
    # Boundary connectivity (Zhu et al. 2014): a region with much of itself on the frame's edge
    # (sky between trees, a bright wall, the sea) is background more often than subject. Its
    # pixels on the outer ring, over the square root of its area; ~0 for an object inside the
    # frame, >= 1 for a band along an edge.
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    ring = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    on_edge = np.bincount(ring, minlength=n + 1)[1 : n + 1].astype(np.float64)
    connectivity = on_edge / np.sqrt(np.maximum(area, 1.0))
    background = np.exp(-(connectivity**2) / (2 * _EDGE_SIGMA**2))
    mass = mass * background
    best = int(np.argmax(mass)) + 1
    # The box is drawn around the thresholded pixels of that region, not the closed mask,
    # which grows a cell or two past the object on every side.
    ys, xs = np.nonzero((labels == best) & (sal >= thr))
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    if (x2 - x1) * (y2 - y1) > _MAX_SALIENT_AREA * sw * sh:
        return None
    inside = sal[y1:y2, x1:x2]
    outside_mass = float(sal.sum() - inside.sum())
    outside_mean = outside_mass / max(sal.size - inside.size, 1)
    # Confident when the box holds a clearly more salient region than the rest of the frame.
    contrast = (inside.mean() - outside_mean) / max(float(inside.mean()), 1e-6)
    # Less sure when another region is nearly as strong: which one wins then flips with small
    # changes to the photo (re-encoding, a caption), and the guard should not obey either.
    second = float(np.partition(mass, -2)[-2]) if n > 1 else 0.0
    dominance = 1.0 - second / max(float(mass[best - 1]), 1e-9)
    alone = _DOMINANCE_FLOOR + (1 - _DOMINANCE_FLOOR) * dominance
    score = float(np.clip(contrast * (0.5 + 0.5 * background[best - 1]) * alone, 0.0, 1.0))
    fx, fy = w / sw, h / sh
    return (x1 * fx, y1 * fy, x2 * fx, y2 * fy), score


def _colour_distance(lines: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The largest per-channel difference of each pixel of ``lines`` (L, N, 3 uint8) from ``colour``.

    Channel by channel: numpy's reduction over a last axis of three is ~10x slower than two
    ``maximum`` calls.
    """
    d = [np.abs(lines[..., c].astype(np.float32) - float(colour[c])) for c in range(3)]
    return np.maximum(np.maximum(d[0], d[1]), d[2])


def _band_width(lines: np.ndarray) -> int:
    """How many lines from the start of ``lines`` (L, N, 3 uint8, edge first) form a uniform band
    whose inner edge is a straight picture edge; 0 when there is no such band."""
    # Most photos have no border: their edge line is not flat, which costs one line to learn.
    edge_line = lines[0].astype(np.float32)
    if float(edge_line.std(axis=0).max()) > _BAND_STD:
        return 0
    colour = np.median(edge_line, axis=0)
    # A band never leaves less than _PICTURE_MIN of the side: only that many lines are read, and
    # those a chunk at a time, up to the first line that is not band (a sky or a fog bank makes a
    # flat edge line too, and reading all of it at once cost ~3 ms per side).
    a = lines[: min(len(lines), int(len(lines) * (1 - _PICTURE_MIN)) + 4)]
    n, step = 0, 16
    while n < len(a):
        # A band line is (nearly) all band colour: JPEG ringing near the picture's edge and noise
        # leave a few pixels off, a picture line has most of them off.
        band = (_colour_distance(a[n : n + step], colour) <= _BAND_COLOUR).mean(axis=1) >= _BAND_LINE
        if not band.all():
            n += int(np.argmin(band))
            break
        n, step = n + len(band), step * 2
    if n < max(2, math.ceil(_BAND_MIN * len(lines))) or n >= len(a) - 3:
        return 0
    # The picture starts on a straight line: most of the first lines past the band (allowing for
    # a blended line) are clearly unlike it. A product on a white backdrop or a bird in a clear
    # sky has flat lines too, but the first lines that are not flat are still mostly backdrop.
    # The picture's edge runs from one end of the line to the other: a graphic on a white page
    # (a blue square) differs along its own width only, so each quarter of the line is asked.
    off = _colour_distance(a[n : n + 3], colour) > _BAND_EDGE_DIFF  # (3, N)
    quarters = np.array_split(off, 4, axis=1)
    shares = np.stack([q.mean(axis=1) for q in quarters], axis=1)  # (3, 4)
    straight = (off.mean(axis=1) >= _BAND_EDGE) & ((shares >= _BAND_EDGE / 2).sum(axis=1) >= 3)
    # The line between band and picture is a blend of both (resampling): it counts as band.
    # Losing one line of the picture is invisible, a sliver of a white frame at a crop's edge is not.
    return n + 1 if bool(straight.any()) else 0


def picture_box(rgb: np.ndarray) -> tuple[int, int, int, int] | None:
    """The picture inside uniform borders of an (H, W, 3) uint8 image, or ``None`` when it has none.

    Letterbox and pillarbox bands, a scan's black edges and a printed frame are flat lines of one
    colour on two opposite sides, ending on a straight edge where the picture starts. Both sides
    of a pair must have such a band (a single flat side is more often a clear sky or a backdrop,
    which the photo needs). Returns (x1, y1, x2, y2) in ``rgb`` pixels, x2/y2 exclusive.
    """
    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        return None

    def same_colour(a: np.ndarray, b: np.ndarray) -> bool:
        diff = np.abs(a.astype(np.float32).mean(axis=0) - b.astype(np.float32).mean(axis=0))
        return bool(diff.max() <= 2 * _BAND_COLOUR)

    def pair(lines: np.ndarray) -> tuple[int, int]:
        a, b = _band_width(lines), _band_width(lines[::-1])
        return (a, b) if a and b and same_colour(lines[0], lines[-1]) else (0, 0)

    top, bottom = pair(rgb)
    left, right = pair(rgb.transpose(1, 0, 2))
    if not (top or left):
        return None
    # In a frame on all four sides, a column past the left band still crosses the top and bottom
    # bands: the straight-edge test reads the columns between those bands, and the rows between
    # the side bands (a mid-grey frame around mid-grey tones would fail it otherwise).
    if top and not left:
        left, right = pair(rgb[top : h - bottom].transpose(1, 0, 2))
    elif left and not top:
        top, bottom = pair(rgb[:, left : w - right])
    x1, y1, x2, y2 = left, top, w - right, h - bottom
    if x2 - x1 < _PICTURE_MIN * w or y2 - y1 < _PICTURE_MIN * h:
        return None
    return x1, y1, x2, y2


Blobs = tuple[int, np.ndarray]  # (k, cv2 component stats of the skin mask made at 1/k resolution)


def skin_blobs(cv2: Any, rgb: np.ndarray) -> Blobs | None:
    """The skin-coloured blobs of ``rgb``, or ``None`` for a (nearly) grey image (no colour to go by).

    The skin rule is the classic YCrCb box (Chai & Ngan 1999), wide enough for light to dark skin;
    sand, wood and tabby cats pass it too, which only costs time. The mask is made at half
    resolution (a quarter of the cost); :func:`skin_regions` scales the boxes back.
    """
    h, w = rgb.shape[:2]
    k = 2 if min(h, w) >= 64 else 1
    small = cv2.resize(rgb, (w // k, h // k), interpolation=cv2.INTER_AREA) if k > 1 else rgb
    ycc = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb).astype(np.int16)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    if float(np.abs(cr - 128).mean() + np.abs(cb - 128).mean()) < 6.0:
        return None
    skin = (cr >= 135) & (cr <= 175) & (cb >= 80) & (cb <= 130) & (y >= 40)
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    _n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(skin, connectivity=4)
    return k, stats[1:]  # row 0 is the background


def skin_regions(rgb: np.ndarray, min_face: int, blobs: Blobs | None) -> list[tuple[int, int, int, int]]:
    """Regions (x1, y1, x2, y2 in ``rgb`` pixels) where a face could be: around skin-coloured blobs.

    The face cascades cost ~25 ms per cascade on a 192 px frame on this project's CPUs, over the
    whole budget of the subject stage; searching only around skin makes a frame without skin (a
    landscape, a product shot) nearly free. A (nearly) grey image has no colour to go by and is
    searched whole. ``blobs``: :func:`skin_blobs` of ``rgb`` (``None``: a grey image).
    """
    h, w = rgb.shape[:2]
    if blobs is None:
        return [(0, 0, w, h)]
    k, stats = blobs
    min_area = max(3, (min_face * min_face) // (10 * k * k))
    boxes = []
    for sx, sy, sw, sh, area in stats:
        if area < min_area:
            continue
        xs, ys = slice(int(sx) * k, int(sx + sw) * k), slice(int(sy) * k, int(sy + sh) * k)
        bw, bh = xs.stop - xs.start, ys.stop - ys.start
        # A blob may also be the neck or a hand next to a face whose own skin is shaded.
        m = max(round(min_face * _ROI_MARGIN), round(max(bw, bh) * _ROI_MARGIN / 2))
        boxes.append([max(0, xs.start - m), max(0, ys.start - m), min(w, xs.stop + m), min(h, ys.stop + m)])
    if not boxes:
        return []
    merged: list[list[int]] = []
    for b in sorted(boxes):
        for mb in merged:
            if b[0] < mb[2] and b[2] > mb[0] and b[1] < mb[3] and b[3] > mb[1]:
                mb[:] = [min(b[0], mb[0]), min(b[1], mb[1]), max(b[2], mb[2]), max(b[3], mb[3])]
                break
        else:
            merged.append(b)
    if sum((b[2] - b[0]) * (b[3] - b[1]) for b in merged) > 0.9 * w * h:
        return [(0, 0, w, h)]
    return [(b[0], b[1], b[2], b[3]) for b in merged]


def _skin_share(cv2: Any, rgb: np.ndarray) -> float:
    """Share of skin-coloured pixels (the same YCrCb rule as :func:`skin_regions`) in ``rgb``."""
    if rgb.size == 0:
        return 0.0
    ycc = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YCrCb)
    y, cr, cb = ycc[..., 0], ycc[..., 1], ycc[..., 2]
    return float(np.mean((cr >= 135) & (cr <= 175) & (cb >= 80) & (cb <= 130) & (y >= 40)))


class SubjectDetector:
    """Finds subjects in working copies; create once per process (``default_detector()``).

    OpenCV's cascade and HOG objects are not documented as thread-safe, so each thread gets its
    own (loaded on first use, ~30 ms); the detector object itself may be shared by threads.
    """

    def __init__(self, use_opencv: bool = True, use_mtcnn: bool = True) -> None:
        self._local = threading.local()
        self.use_opencv = use_opencv
        self.use_mtcnn = use_mtcnn

    @property
    def has_opencv(self) -> bool:
        """Whether faces and people are detected (OpenCV found), not only saliency."""
        return self.use_opencv and _cv2() is not None

    def describe(self) -> str:
        """Which detectors this detector runs, in words (for status lines and benchmarks)."""
        if not self.has_opencv:
            return "saliency only (no OpenCV)"
        faces = "MTCNN faces" if self.use_mtcnn and weights_dir() is not None else "Haar cascade faces"
        return f"{faces} + HOG people + saliency"

    def _models(self) -> Any | None:
        models = getattr(self._local, "models", None)
        if models is None and self.use_opencv:
            cv2 = _cv2()
            if cv2 is None:
                return None
            base = cv2.data.haarcascades
            frontal = cv2.CascadeClassifier(base + "haarcascade_frontalface_alt2.xml")
            profile = cv2.CascadeClassifier(base + "haarcascade_profileface.xml")
            if frontal.empty() or profile.empty():
                raise RuntimeError(f"OpenCV's bundled face cascades could not be read from {base}")
            hog = cv2.HOGDescriptor()
            hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
            # MTCNN's weights load on the first photo with skin regions (~0.1 s, ~20 MB): a
            # library of landscapes never pays for them.
            models = self._local.models = (cv2, frontal, profile, hog, self.use_mtcnn and weights_dir() is not None)
        return models

    def detect(self, loaded: LoadedImage) -> list[Subject]:
        """Every subject of one photo, best first within each kind; ``[]`` when there is none."""
        image = loaded.image
        width, height = loaded.info.width, loaded.info.height
        if image.width < 1 or image.height < 1 or width < 1 or height < 1:
            return []
        short = min(image.width, image.height)
        f = min(1.0, DETECT_SIDE / short)
        work = image if f >= 1.0 else image.resize(
            (max(1, round(image.width * f)), max(1, round(image.height * f))), Image.Resampling.BILINEAR
        )
        rgb_u8 = np.asarray(work.convert("RGB"))
        # Inside letterbox bands or a frame, the subjects are searched in the picture alone: the
        # bands would otherwise be the "background" that saliency measures everything against.
        inner = picture_box(rgb_u8)
        ox = oy = 0
        if inner is not None:
            ox, oy = inner[0], inner[1]
            rgb_u8 = np.ascontiguousarray(rgb_u8[inner[1] : inner[3], inner[0] : inner[2]])
        found: list[Found] = []
        models = self._models()
        if models is not None:
            found.extend(self._opencv(models, rgb_u8))
        region = main_salient_region(rgb_u8.astype(np.float32) * (1 / 255.0))
        if region is not None:
            found.append(("salient", region[0], region[1]))
        found = [(k, (b[0] + ox, b[1] + oy, b[2] + ox, b[3] + oy), sc) for k, b, sc in found]
        # Back to upright full-resolution pixels, rounded outwards, clipped to the frame; the
        # picture inside a border is rounded inwards (no crop inside it may show a band's edge).
        sx, sy = work.width / width, work.height / height
        out: list[Subject] = []
        if inner is not None:
            x1, y1, x2, y2 = inner
            content: Box = (min(width, math.ceil(x1 / sx)), min(height, math.ceil(y1 / sy)),
                            max(0, math.floor(x2 / sx)), max(0, math.floor(y2 / sy)))
            if content[2] > content[0] and content[3] > content[1]:
                out.append(Subject("content", content, 1.0))
        for kind, (x1, y1, x2, y2), score in found:
            box: Box = (
                max(0, int(math.floor(x1 / sx))),
                max(0, int(math.floor(y1 / sy))),
                min(width, int(math.ceil(x2 / sx))),
                min(height, int(math.ceil(y2 / sy))),
            )
            if box[2] > box[0] and box[3] > box[1]:
                out.append(Subject(kind, box, round(float(np.clip(score, 0.0, 1.0)), 4)))
        order = {k: i for i, k in enumerate(KINDS)}
        out.sort(key=lambda s: (order.get(s.kind, len(order)), -s.score))
        return out

    def _opencv(self, models: Any, rgb: np.ndarray) -> list[Found]:
        cv2, frontal, profile, hog, want_mtcnn = models
        raw = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = raw.shape
        if float(raw.std()) < 1.0 or min(h, w) < 20:
            return []
        gray = cv2.equalizeHist(raw)
        # Faces are searched at FACE_SIDE (the cascades' cost grows with the pixel count), only
        # around skin-coloured regions when the frame has colour.
        ff = min(1.0, FACE_SIDE / min(h, w))
        if ff < 1.0:
            size = (max(1, round(w * ff)), max(1, round(h * ff)))
            face_img = cv2.equalizeHist(cv2.resize(raw, size, interpolation=cv2.INTER_AREA))
        else:
            face_img = gray
        fh, fw = face_img.shape
        min_face = max(20, round(min(fh, fw) * MIN_FACE_FRACTION))
        faces: list[Found] = []
        blobs = skin_blobs(cv2, rgb)
        regular = round(min_face / ff)  # the smallest regular face, in detection-image pixels
        rois = skin_regions(rgb, regular, blobs)
        mtcnn = load_mtcnn() if want_mtcnn and rois else None  # None: the cascades search
        if mtcnn is not None:
            faces = _mtcnn_faces(cv2, mtcnn, rgb, rois)
        for rx1, ry1, rx2, ry2 in rois if mtcnn is None else ():
            x0, y0 = int(rx1 * ff), int(ry1 * ff)
            x3, y3 = min(fw, math.ceil(rx2 * ff)), min(fh, math.ceil(ry2 * ff))
            # The profile cascade (two passes, one per direction) costs more than the frontal one
            # and fires more often on texture: it runs around compact skin regions, where a
            # turned head is plausible, and in the head regions of people (below); a skin region
            # covering most of the frame (sand, brick, wood) gets the frontal search only.
            compact = (x3 - x0) * (y3 - y0) <= _PROFILE_ROI_SHARE * fw * fh
            for kind, (fx1, fy1, fx2, fy2), sc in self._faces(
                frontal, profile if compact else None, face_img[y0:y3, x0:x3], min_face, _FACE_NEIGHBOURS,
                _PROFILE_NEIGHBOURS,
            ):
                faces.append((kind, ((fx1 + x0) / ff, (fy1 + y0) / ff, (fx2 + x0) / ff, (fy2 + y0) / ff), sc))
        faces = nms(faces, _FACE_IOU)

        people: list[Found] = []
        # OpenCV's HOG crashes on images smaller than its window. A frame without skin anywhere
        # rarely shows a person large enough for the window (2/3 of the frame's height here).
        # HOG costs as much as all face searches together, and a person box it finds is kept
        # only when a face, skin that stands out from the frame, or a very sure margin confirms
        # it (below): on a frame that is mostly skin-coloured (sandstone, wood, a beach) and has
        # no face, only the very sure ones could pass, and those are rare: HOG is skipped there.
        frame_skin = _skin_share(cv2, rgb) if rois else 0.0
        if rois and h >= _HOG_WIN[1] and w >= _HOG_WIN[0] and (faces or frame_skin < _HOG_SKIN_MAX):
            # A person is kept only with skin or a face to confirm it (below), so only the band
            # of columns around the skin regions is searched. (A coarser 8 px stride would cost a
            # third, but misses real people whose SVM margin is low.)
            bx1 = max(0, min(r[0] for r in rois) - _HOG_WIN[0])
            bx2 = min(w, max(r[2] for r in rois) + _HOG_WIN[0])
            if bx2 - bx1 < _HOG_WIN[0]:
                bx1, bx2 = max(0, bx2 - _HOG_WIN[0]), min(w, bx1 + _HOG_WIN[0])
            band = np.ascontiguousarray(gray[:, bx1:bx2])
            rects, weights = hog.detectMultiScale(band, winStride=(4, 4), padding=(8, 8), scale=1.2)
            if len(rects):
                rects = np.asarray(rects).reshape(-1, 4) + np.array([bx1, 0, 0, 0])
            for (x, y, bw, bh), wt in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
                # The detection window has a margin around the body (the person is about the
                # middle 60% of its width and 90% of its height); the SVM margin wt is 0 on the
                # decision boundary and ~1.5 for a clear person.
                box = (x + 0.2 * bw, y + 0.05 * bh, x + 0.8 * bw, y + 0.95 * bh)
                people.append(("person", tuple(float(v) for v in box), float(wt) / (float(wt) + 0.5)))  # type: ignore[misc]
            people = nms([p for p in people if p[2] > 0.3], _PERSON_IOU)
        # A person implies a head: look harder for a face in the top of a person box with none.
        confirmed: list[Found] = []
        for person in people:
            _, (x1, y1, x2, y2), score = person
            hx1, hy1 = int(max(0, x1 - 0.1 * (x2 - x1))), int(max(0, y1 - 0.05 * (y2 - y1)))
            hx2, hy2 = int(min(w, x2 + 0.1 * (x2 - x1))), int(min(h, y1 + 0.4 * (y2 - y1)))
            has_face = any(_inside(fb, (x1, y1, x2, y2)) for _, fb, _ in faces)
            roi = gray[hy1:hy2, hx1:hx2]
            if not has_face and mtcnn is None and min(roi.shape) >= 20:
                # The head region is small, so the finest scale steps cost little here.
                for kind, (fx1, fy1, fx2, fy2), sc in self._faces(frontal, profile, roi, 20, 2, 2, 1.05, 1.05):
                    faces.append((kind, (fx1 + hx1, fy1 + hy1, fx2 + hx1, fy2 + hy1), sc))
                    has_face = True
                faces = nms(faces, _FACE_IOU)
            # HOG alone fires on trees, statues and railings: a person box is kept when a face
            # or skin (face, arms) confirms it, or when the SVM is very sure (a person seen from
            # behind, in winter clothes).
            # Skin confirms only where it stands out from the frame (a sandstone square is all
            # "skin").
            if has_face or score >= _PERSON_SURE or _skin_share(cv2, rgb[hy1:hy2, hx1:hx2]) >= max(
                _PERSON_SKIN, 2.0 * frame_skin
            ):
                confirmed.append(person)
        # Last, so a person's own head search (more sensitive, and it knows profiles) comes first.
        if blobs is not None:
            # Below the smallest face MTCNN (or the regular cascade pass) looks for: the faces of
            # a group photo, frontal ones around face-sized skin blobs.
            smallest = _mtcnn_min_face(h, w) if want_mtcnn else regular
            faces = nms(faces + self._small_faces(cv2, frontal, rgb, gray, blobs, smallest, faces), _FACE_IOU)
        return faces + confirmed

    @staticmethod
    def _small_faces(cv2: Any, frontal: Any, rgb: np.ndarray, gray: np.ndarray, blobs: Blobs, regular: int,
                     found: list[Found]) -> list[Found]:
        """Frontal faces smaller than the regular search finds (``regular`` px, about 1/7 of the
        detection image's short side) down to :data:`SMALL_FACE_FRACTION` of it: the faces of a
        group photo, a wedding party. Searched only around face-sized, face-shaped skin blobs
        (at most :data:`_SMALL_FACE_ROIS` of them), each upsampled 2x for the cascade's 20 px
        window, with a stricter test than the regular pass: the box must be mostly skin.
        """
        h, w = gray.shape
        smallest = max(6, round(min(h, w) * SMALL_FACE_FRACTION))
        if smallest >= regular:
            return []
        k, stats = blobs
        cand = []
        for sx, sy, sw, sh, area in stats:
            bw, bh, a = int(sw) * k, int(sh) * k, int(area) * k * k
            # A small face's skin: between the smallest face and the regular pass's size each way,
            # upright-ish (a face, maybe with its neck), filled like a face (not a thin edge).
            if not (0.6 * smallest <= bw <= regular and 0.6 * smallest <= bh <= 2 * regular):
                continue
            if not 0.6 <= bh / max(bw, 1) <= 2.5 or a < 0.35 * bw * bh:
                continue
            cand.append((a, int(sx) * k, int(sy) * k, bw, bh))
        out: list[Found] = []
        for _a, x, y, bw, bh in sorted(cand, reverse=True)[:_SMALL_FACE_ROIS]:
            # The face box reaches a little past its skin (hair, chin): a third of the blob each way.
            m = max(bw, bh) // 3 + 2
            x0, y0, x3, y3 = max(0, x - m), max(0, y - m), min(w, x + bw + m), min(h, y + bh + m)
            big = cv2.resize(gray[y0:y3, x0:x3], None, fx=2.0, fy=2.0, interpolation=cv2.INTER_LINEAR)
            rects, counts = frontal.detectMultiScale2(
                big, scaleFactor=1.15, minNeighbors=_SMALL_FACE_NEIGHBOURS, minSize=(20, 20),
                maxSize=(2 * regular, 2 * regular),
            )
            for (fx, fy, fw, fh), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
                box = (x0 + fx / 2.0, y0 + fy / 2.0, x0 + (fx + fw) / 2.0, y0 + (fy + fh) / 2.0)
                bx1, by1, bx2, by2 = (int(round(v)) for v in box)
                # On texture the cascade fires on any blob-shaped shading: a small false face
                # would pin every crop of the photo, so the box must be mostly skin.
                if any(iou(box, f[1]) >= _FACE_IOU or _inside(box, f[1], 0.5) for f in found):
                    continue  # a face the regular pass found (its kind, e.g. a profile, stays)
                if _skin_share(cv2, rgb[by1:by2, bx1:bx2]) >= _SMALL_FACE_SKIN:
                    out.append(("face", box, 0.9 * _confidence(n)))
        return out

    @staticmethod
    def _faces(
        frontal: Any, profile: Any | None, gray: np.ndarray, min_size: int, n_frontal: int, n_profile: int,
        scale: float = 0.0, profile_scale: float = 0.0,
    ) -> list[Found]:
        h, w = gray.shape
        if min(h, w) < min_size:
            return []
        found: list[Found] = []
        size = (min_size, min_size)
        rects, counts = frontal.detectMultiScale2(
            gray, scaleFactor=scale or _SCALE_FACTOR, minNeighbors=n_frontal, minSize=size
        )
        for (x, y, bw, bh), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
            found.append(("face", (float(x), float(y), float(x + bw), float(y + bh)), _confidence(n)))
        if profile is None:
            return nms(found, _FACE_IOU)
        mirrored = np.ascontiguousarray(gray[:, ::-1])
        for img, flip in ((gray, False), (mirrored, True)):
            rects, counts = profile.detectMultiScale2(
                img, scaleFactor=profile_scale or _PROFILE_SCALE_FACTOR, minNeighbors=n_profile, minSize=size
            )
            for (x, y, bw, bh), n in zip(np.asarray(rects).reshape(-1, 4), np.asarray(counts).reshape(-1)):
                x1, x2 = (w - (x + bw), w - x) if flip else (x, x + bw)
                # Profile cascades fire more often on non-faces: trust them a little less.
                found.append(("profile_face", (float(x1), float(y), float(x2), float(y + bh)), 0.85 * _confidence(n)))
        return nms(found, _FACE_IOU)


def _mtcnn_min_face(h: int, w: int) -> int:
    return max(12, round(min(h, w) * MTCNN_MIN_FACE))


def _mtcnn_faces(cv2: Any, mtcnn: MTCNN, rgb: np.ndarray, rois: list[tuple[int, int, int, int]]) -> list[Found]:
    """MTCNN's faces inside the bounding box of the skin regions (the whole frame for a grey
    image), down to :data:`MTCNN_MIN_FACE` of the frame's short side. A face turned well away
    from the camera (the nose far from the eyes' midpoint) is a ``profile_face``."""
    h, w = rgb.shape[:2]
    x0, y0 = min(r[0] for r in rois), min(r[1] for r in rois)
    x3, y3 = max(r[2] for r in rois), max(r[3] for r in rois)
    min_face = _mtcnn_min_face(h, w)
    out: list[Found] = []
    for hit in mtcnn.detect(cv2, np.ascontiguousarray(rgb[y0:y3, x0:x3]), min_face):
        if hit.score < _MTCNN_SURE:
            continue
        x1, y1, x2, y2 = hit.box
        # MTCNN's boxes run from the brow to the chin and cheek to cheek; the cascades' (and
        # the guard's proportions, see guard.STANDING_HEIGHT) are about square: widen to square.
        half = max(x2 - x1, y2 - y1) / 2.0
        cx = (x1 + x2) / 2.0
        box = (max(0.0, cx - half + x0), y1 + y0, min(float(w), cx + half + x0), y2 + y0)
        kind = "profile_face" if abs(hit.yaw) >= _MTCNN_PROFILE_YAW else "face"
        out.append((kind, box, hit.score))
    return nms(out, _FACE_IOU)


_default: SubjectDetector | None = None
_default_lock = threading.Lock()


def default_detector() -> SubjectDetector:
    """The process-wide detector (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = SubjectDetector()
        return _default


def detect_subjects(loaded: LoadedImage) -> list[Subject]:
    """The subjects of one loaded photo (faces, profile faces, people, the main salient region).

    Boxes are in upright full-resolution pixels, x2/y2 exclusive; scores in [0, 1]. Raises only
    on a detector bug; the pipeline catches that per photo.
    """
    return default_detector().detect(loaded)
