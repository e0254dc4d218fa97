"""The weights-free scorer: smartcrop-style feature maps, every candidate scored in O(1).

Feature maps are computed once per image on the small working copy (detail/edges with their
orientation, skin, saturation, luminance and a saliency proxy). Each map, and its first moments
for centroids, goes into a summed-area table, so any box's sum costs four lookups and all
candidates are scored together with array arithmetic, whatever their number.

The score rewards keeping the interesting content (and concentrating it), placing its weight on
a thirds intersection or the centre, balanced exposure and colour, and penalises crop edges that
cut through interesting content. Every candidate is explained in the ten elements of
:mod:`clipcrop_plugin.elements`, each in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..candidates import CandidateSet
from ..config import Settings
from ..imaging import LoadedImage
from .base import ScoreResult

if TYPE_CHECKING:
    from .learned import PersonalWeights

# Summed-area table channels (_C: interest above the photo's background level, see _tables).
_I, _C, _Q, _QX, _QY, _D, _EH, _EV, _EC, _L, _L2, _S, _SAL, _DEAD = range(14)
_CHANNELS = 14

_SKIN_COLOR = np.array([0.78, 0.57, 0.44], dtype=np.float32)  # smartcrop's skin tone (normalised RGB)


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window, edges clamped; two passes approximate a Gaussian."""
    if r <= 0:
        return a
    out = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis, dtype=np.float64)
        n = out.shape[axis]
        hi = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis)
        lo = np.take(c, np.arange(0, n), axis=axis)
        out = ((hi - lo) / (2 * r + 1)).astype(np.float32)
    return out


def _robust_max(a: np.ndarray, q: float = 99.0) -> float:
    """A high percentile (of a strided sample: cheap and plenty for a scale), else the max."""
    if a.size == 0:
        return 0.0
    sample = a[::2, ::2] if a.ndim == 2 and min(a.shape) >= 32 else a
    hi = float(np.percentile(sample, q))
    return hi if hi > 1e-8 else float(a.max())


def _normalize(a: np.ndarray, q: float = 99.0) -> np.ndarray:
    """Scale to [0, 1] by a high percentile so a few hot pixels do not flatten the map."""
    hi = _robust_max(a, q)
    if hi <= 1e-8:
        return np.zeros_like(a)
    return np.clip(a / hi, 0.0, 1.0)


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float map to ``size`` = (w, h) with Pillow's float mode."""
    if (a.shape[1], a.shape[0]) == size:
        return a
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").resize(size, Image.Resampling.BILINEAR))


def _spectral_residual(lum: np.ndarray) -> np.ndarray:
    """Spectral-residual saliency (Hou & Zhang 2007) at 64 px, resized back to ``lum``'s shape."""
    small = _resize(lum, (64, 64))
    f = np.fft.fft2(small)
    log_amp = np.log(np.abs(f) + 1e-6).astype(np.float32)
    residual = log_amp - _box_blur(log_amp, 1)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2
    sal = _box_blur(_box_blur(sal.astype(np.float32), 2), 2)
    return _resize(_normalize(sal), (lum.shape[1], lum.shape[0]))


def _pool2(a: np.ndarray) -> np.ndarray:
    """2x2 block mean (an odd last row/column is dropped)."""
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    a = a[:h, :w]
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * 0.25


def feature_maps(image: Image.Image) -> dict[str, np.ndarray]:
    """The maps the score uses, each (H, W) float32.

    Edges are measured on ``image`` itself (working size); every map is then 2x2 block-averaged
    when the image is large enough, and the colour, skin and saliency maps are computed at that
    half resolution: boxes still land within a cell (< 1% of the image) and everything after
    the gradients costs a quarter.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) * (1.0 / 255.0)
    lum_full = rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)

    # Gradients and their orientation: c = cos(2*theta) is +1 on vertical edges (strong d/dx),
    # -1 on horizontal ones and 0 on diagonals, so the three shares add up to the magnitude.
    p = np.pad(lum_full, 1, mode="edge")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) * 0.5
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) * 0.5
    g2 = gx * gx + gy * gy
    mag = np.sqrt(g2)
    c = (gx * gx - gy * gy) / (g2 + 1e-8)
    e_v = mag * np.maximum(c, 0.0)
    e_h = mag * np.maximum(-c, 0.0)
    e_c = mag - e_v - e_h

    pool = min(lum_full.shape) >= 96
    if pool:
        mag, e_v, e_h, e_c = _pool2(mag), _pool2(e_v), _pool2(e_h), _pool2(e_c)
        rgb = np.stack([_pool2(rgb[..., k]) for k in range(3)], axis=-1)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    scale = _robust_max(mag)
    detail = np.clip(mag / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(mag)
    if scale > 0:
        e_v, e_h, e_c = e_v / scale, e_h / scale, e_c / scale

    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    sat = np.clip((mx - mn) / (1.0 - np.abs(mx + mn - 1.0) + 1e-6), 0.0, 1.0)
    sat_feature = np.where((lum >= 0.05) & (lum <= 0.9), np.maximum(sat - 0.4, 0.0) * (1 / 0.6), 0.0)

    norm = np.sqrt(r * r + g * g + b * b) + 1e-3
    skin_d = np.sqrt(
        (r / norm - _SKIN_COLOR[0]) ** 2 + (g / norm - _SKIN_COLOR[1]) ** 2 + (b / norm - _SKIN_COLOR[2]) ** 2
    )
    skin = np.where(lum >= 0.2, np.maximum(0.2 - skin_d, 0.0) * 5.0, 0.0)

    # Saliency proxy: spectral residual plus colour distinctness from the image's mean colour.
    blur_r = max(1, round(min(lum.shape) / 64))
    mean_rgb = rgb.reshape(-1, 3).mean(axis=0)
    distinct = _box_blur(np.sqrt(((rgb - mean_rgb) ** 2).sum(axis=-1)), blur_r)
    # A mild centre prior, as in most saliency models: photographers rarely put the subject
    # against the frame edge, and spectral residual over-reacts to the image border.
    h, w = lum.shape
    yy = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    xx = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    prior = 0.6 + 0.4 * np.exp(-(yy[:, None] ** 2 + xx[None, :] ** 2) / (2 * 0.3**2))
    saliency = _normalize((0.55 * _spectral_residual(lum) + 0.45 * _normalize(distinct)) * prior)

    detail_soft = _normalize(_box_blur(detail, blur_r))
    interest = 0.45 * saliency + 0.3 * detail_soft + 0.15 * sat_feature + 1.2 * skin * (detail_soft + 0.3)
    # Squaring sharpens the map so the subject outweighs evenly textured background; the floor
    # keeps centroids defined on flat images.
    interest = interest * interest + 0.01
    return {
        "interest": interest.astype(np.float32),
        "detail": detail.astype(np.float32),
        "e_h": e_h.astype(np.float32),
        "e_v": e_v.astype(np.float32),
        "e_c": e_c.astype(np.float32),
        "lum": lum.astype(np.float32),
        "sat": sat.astype(np.float32),
        "saliency": saliency.astype(np.float32),
        # Dead pixels: black or blown-out and without detail (letterbox bands, a trail camera's
        # data strip, vignetted corners): picture area that shows nothing, unlike a calm sky.
        "dead": (((lum < 0.07) | (lum > 0.97)) & (detail_soft < 0.08)).astype(np.float32),
    }


def _tables(maps: dict[str, np.ndarray], background: float = 0.5) -> np.ndarray:
    """Summed-area tables (C, H+1, W+1) of every channel, zero-padded at the top/left.

    ``_C`` is the interest above the photo's own background level (its ``background`` quantile):
    what a crop keeps or cuts is measured in it, so an evenly textured background, which the
    interest map rates everywhere alike, is neither "content" a crop loses nor something a crop
    edge "cuts"; only what stands out of it is.
    """
    interest = maps["interest"]
    h, w = interest.shape
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    q = interest * interest  # peaked weight: the centroid follows the strongest content
    # float32 halves the memory traffic; sums stay exact to ~1e-4 of a strip at these sizes.
    stack = np.empty((_CHANNELS, h, w), dtype=np.float32)
    stack[_I] = interest
    level = float(np.quantile(interest[::2, ::2], background)) if background > 0 else 0.0
    # The small floor keeps a flat photo's content defined (evenly spread: no crop gains on it).
    stack[_C] = np.maximum(interest - level, 0.0) + 1e-3
    stack[_Q] = q
    stack[_QX] = q * xs
    stack[_QY] = q * ys
    stack[_D] = maps["detail"]
    stack[_EH] = maps["e_h"]
    stack[_EV] = maps["e_v"]
    stack[_EC] = maps["e_c"]
    stack[_L] = maps["lum"]
    stack[_L2] = maps["lum"] ** 2
    stack[_S] = maps["sat"]
    stack[_SAL] = maps["saliency"]
    stack[_DEAD] = maps["dead"]
    # The same sums as stack.cumsum(axis=1).cumsum(axis=2), in the same order, faster: numpy's
    # cumsum runs one element at a time, while a running sum of rows adds whole rows at once.
    for y in range(1, h):
        np.add(stack[:, y - 1], stack[:, y], out=stack[:, y])
    sat = np.zeros((_CHANNELS, h + 1, w + 1), dtype=np.float32)
    np.cumsum(stack, axis=2, out=sat[:, 1:, 1:])
    return sat


def _box_sums(sat: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """(C, N) sums over boxes given in table cells (x2/y2 exclusive): four lookups per box."""
    return sat[:, y2, x2] - sat[:, y1, x2] - sat[:, y2, x1] + sat[:, y1, x1]


def _gauss(d2: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-d2 / (2.0 * sigma * sigma))


def _pairwise_iou(b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(b[:, None, 0], b[None, :, 0])
    y1 = np.maximum(b[:, None, 1], b[None, :, 1])
    x2 = np.minimum(b[:, None, 2], b[None, :, 2])
    y2 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)


def _smooth_within_groups(scores: np.ndarray, cands: CandidateSet, sigma: float) -> np.ndarray:
    """Kernel-average each score over the overlapping candidates of its set."""
    if sigma <= 0:
        return scores
    out = scores.copy()
    groups = np.asarray(cands.groups)
    boxes = np.asarray(cands.boxes, dtype=np.float64)
    for group in set(cands.groups) - {"full"}:
        idx = np.flatnonzero(groups == group)
        if len(idx) < 2:
            continue
        k = np.exp(-((1.0 - _pairwise_iou(boxes[idx])) ** 2) / (2.0 * sigma * sigma))
        smooth = (k @ scores[idx]) / k.sum(axis=1)
        # Smoothing decides the order within the set; the level stays the crops' own: the set's
        # best keeps its unsmoothed score (the others move by the same offset), or averaging with
        # weaker neighbours would make every crop look worse than the full frame, which has none.
        top = int(np.argmax(smooth))
        out[idx] = smooth + (scores[idx][top] - smooth[top])
    # The full frame keeps its own score, and so does any candidate that is the full frame
    # (1:1 on a square photo): the same box must never show an improvement over itself.
    fi = cands.full_index
    same = np.all(boxes == boxes[fi], axis=1)
    out[same] = scores[fi]
    return out


# Columns of HeuristicFeatures.terms: the score's terms, then where the interest centroid sits in
# the crop (u, v in [0, 1] of its width/height), which placement tastes are learned from.
TERM_NAMES = ("retain", "log_density", "composition", "lighting", "color", "border_cut", "centroid_x", "centroid_y")


@dataclass
class HeuristicFeatures:
    """What :meth:`HeuristicScorer.features` measures per box: ``terms`` (N, 8), ``elements``
    (N, 10) and ``base``, the built-in score before smoothing."""

    terms: np.ndarray
    elements: np.ndarray
    base: np.ndarray


class HeuristicScorer:
    """Weights-free scorer (registry name ``heuristic``): fast, explainable, no model needed.

    Score (higher is better): retained content (interest above the photo's background level)
    + capped log(content density relative to the image) + 0.3 x best of thirds/centre placement
    + 0.15 x lighting + 0.1 x colour - 0.4 x border cut (the photo's own border included) - dead
    share (black or blown-out area without detail), then ordered by its average with overlapping
    crops of the same set. Elements, each in [0, 1]:

    ==================== ==========================================================
    center               closeness of the interest centroid to the crop centre
    rule_of_thirds       closeness of that centroid to the nearest thirds intersection
    horizontal/vertical  share of edge energy on horizontal / vertical edges
    curved               share on diagonal and curved edges
    color                mean saturation
    lighting             exposure balance (mean luminance near mid-grey) and contrast
    depth_of_field       detail inside vs. outside the crop (0.5 for the full frame)
    object_emphasis      saliency inside vs. outside the crop (0.5 for the full frame)
    interesting_content  interest density inside vs. the whole image
    ==================== ==========================================================
    """

    name = "heuristic"
    weights_hash: str | None = None
    device = "cpu"
    min_side = 192

    # Score weights (see module docstring); retained content dominates so a crop only wins
    # when it concentrates the picture without cutting its subject.
    # With equal retain/density weights, trimming a margin pays off when its interest density is
    # below half the image's mean.
    w_retain = 1.0
    w_density = 1.0
    w_composition = 0.3
    w_lighting = 0.15
    w_color = 0.1
    w_border = 0.4
    w_dead = 1.0  # per share of the crop's area that is dead (black or blown out, no detail)
    # Width (in 1 - IoU) of the kernel that averages each candidate's score with its overlapping
    # neighbours: a crop wins for sitting in a broadly good region, not for a lucky pixel, which
    # keeps the choice stable under JPEG noise, rotation and small edits.
    smoothing = 0.1
    # Quantile of the interest map taken as the photo's background level (see _tables).
    background = 0.5
    # Largest gain (in score units) from concentrating the content (see features).
    density_cap = 0.35

    def __init__(self, settings: Settings | None = None, personal: PersonalWeights | None = None) -> None:
        self.settings = settings
        # A learned re-weighting of the terms below (clipcrop-train personalize); its hash keeps
        # the runs of every version apart in the database.
        self.personal = personal
        if personal is not None:
            self.weights_hash = personal.weights_hash

    @classmethod
    def create(cls, settings: Settings | None = None, device: str = "auto", weights: str | None = None) -> HeuristicScorer:
        """Registry constructor: the built-in weights, or the model folder's active personalization.

        ``device`` and ``weights`` are accepted and ignored (no network).
        """
        from .learned import load_active

        personal = load_active("heuristic", settings) if settings is not None else None
        return cls(settings, personal)  # type: ignore[arg-type]

    @classmethod
    def inventory(cls, settings: Settings) -> dict:
        """``clipcrop models`` row: always ready, nothing to load."""
        return {"ready": True, "weights": None, "sha256": None, "detail": "no weights needed"}

    def score(self, images: Sequence[LoadedImage], candidates: Sequence[CandidateSet]) -> list[ScoreResult]:
        """Score every candidate of every image; one :class:`ScoreResult` per image."""
        if len(images) != len(candidates):
            raise ValueError("images and candidates must have the same length")
        return [self.score_one(li, cs) for li, cs in zip(images, candidates)]

    def score_one(self, loaded: LoadedImage, cands: CandidateSet) -> ScoreResult:
        """Scores (N,) and elements (N, 10) for one image's candidates."""
        f = self.features(loaded, cands)
        if len(f.base) == 0:
            return ScoreResult(scores=np.zeros(0), elements=np.zeros((0, 10)))
        scores = f.base if self.personal is None else self.personal.score(f, cands)
        scores = _smooth_within_groups(scores, cands, self.smoothing)
        return ScoreResult(scores=scores.astype(np.float64), elements=f.elements)

    def features(self, loaded: LoadedImage, cands: CandidateSet) -> HeuristicFeatures:
        """Per-candidate score terms (:data:`TERM_NAMES`), elements and the built-in (unsmoothed) score.

        The accessor personalization learns from: any boxes may be passed, not only candidates.
        """
        sat = _tables(feature_maps(loaded.image), self.background)
        h, w = sat.shape[1] - 1, sat.shape[2] - 1
        boxes = np.asarray(cands.boxes, dtype=np.float64)
        n = len(boxes)
        if n == 0:
            return HeuristicFeatures(np.zeros((0, len(TERM_NAMES))), np.zeros((0, 10)), np.zeros(0))
        W, H = float(cands.width), float(cands.height)
        # Full-resolution boxes -> table cells (rounded, at least one cell wide).
        fx1, fy1 = boxes[:, 0] / W, boxes[:, 1] / H
        fx2, fy2 = boxes[:, 2] / W, boxes[:, 3] / H
        x1 = np.clip(np.round(fx1 * w), 0, w - 1).astype(np.int64)
        y1 = np.clip(np.round(fy1 * h), 0, h - 1).astype(np.int64)
        x2 = np.clip(np.maximum(np.round(fx2 * w), x1 + 1), 1, w).astype(np.int64)
        y2 = np.clip(np.maximum(np.round(fy2 * h), y1 + 1), 1, h).astype(np.int64)
        bw, bh = (x2 - x1).astype(np.float64), (y2 - y1).astype(np.float64)
        area = bw * bh
        total_area = float(w * h)
        tot = sat[:, h, w]
        s = _box_sums(sat, x1, y1, x2, y2)
        eps = 1e-9

        retain = s[_C] / (tot[_C] + eps)
        frac = area / total_area
        density = retain / np.maximum(frac, eps)
        log_density = np.log(np.maximum(density, eps))
        if self.density_cap > 0:
            # Concentrating the content pays while the frame is diluted, with diminishing returns:
            # unbounded, the log would make every subject on a calm background worth a tighter
            # crop, and a well-filled frame would never be kept.
            log_density = self.density_cap * np.tanh(log_density / self.density_cap)

        # Centroid of the peaked interest, in box-relative coordinates.
        cx = s[_QX] / (s[_Q] + eps)
        cy = s[_QY] / (s[_Q] + eps)
        u = (cx - x1 / w) / np.maximum(bw / w, eps)
        v = (cy - y1 / h) / np.maximum(bh / h, eps)
        center = _gauss((u - 0.5) ** 2 + (v - 0.5) ** 2, 0.12)
        thirds = np.zeros(n)
        for tx in (1 / 3, 2 / 3):
            for ty in (1 / 3, 2 / 3):
                thirds = np.maximum(thirds, _gauss((u - tx) ** 2 + (v - ty) ** 2, 0.08))

        edge_total = s[_EH] + s[_EV] + s[_EC] + eps
        horizontal = s[_EH] / edge_total
        vertical = s[_EV] / edge_total
        curved = s[_EC] / edge_total

        mean_l = s[_L] / area
        std_l = np.sqrt(np.maximum(s[_L2] / area - mean_l**2, 0.0))
        lighting = 0.6 * (1.0 - 2.0 * np.abs(mean_l - 0.5)) + 0.4 * np.minimum(1.0, std_l / 0.25)
        color = np.clip(s[_S] / area, 0.0, 1.0)

        out_area = total_area - area
        has_out = out_area >= 0.01 * total_area
        safe_out = np.maximum(out_area, 1.0)
        d_in, d_out = s[_D] / area, (tot[_D] - s[_D]) / safe_out
        dof = np.where(has_out, d_in / (d_in + d_out + eps), 0.5)
        sal_in, sal_out = s[_SAL] / area, (tot[_SAL] - s[_SAL]) / safe_out
        emphasis = np.where(has_out, sal_in / (sal_in + sal_out + eps), 0.5)
        i_in, i_all = s[_I] / area, tot[_I] / total_area
        interesting = i_in / (i_in + i_all + eps)

        border = self._border_cut(sat, x1, y1, x2, y2, w, h, tot[_C] / total_area)

        scores = (
            self.w_retain * retain
            + self.w_density * log_density
            + self.w_composition * np.maximum(thirds, center)
            + self.w_lighting * lighting
            + self.w_color * color
            - self.w_border * border
            - self.w_dead * s[_DEAD] / area
        )
        elements = np.stack(
            [center, thirds, horizontal, vertical, curved, color, lighting, dof, emphasis, interesting], axis=1
        )
        terms = np.stack([retain, log_density, np.maximum(thirds, center), lighting, color,
                          border, u, v], axis=1)
        return HeuristicFeatures(terms.astype(np.float64), np.clip(elements, 0.0, 1.0), scores.astype(np.float64))

    @staticmethod
    def _border_cut(
        sat: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray, w: int, h: int, i_all: float
    ) -> np.ndarray:
        """How much interesting content each crop edge cuts through, relative to the image mean.

        An edge cuts through content when there is content on both sides of it: the lesser of
        the mean content (interest above the background level) in a thin strip just inside and
        just outside the edge. An edge that runs along the border between a subject and empty
        background costs nothing; one lying on the photo's own border costs the content in its
        inner strip (what the frame itself slices), so the full frame is measured alike.
        """
        tx = np.maximum(1, np.round((x2 - x1) * 0.05)).astype(np.int64)
        ty = np.maximum(1, np.round((y2 - y1) * 0.05)).astype(np.int64)
        # The weight ramps up over the first 4% of the image from its border, so moving an edge
        # by one cell never makes the score jump.
        ramp_x, ramp_y = max(1.0, 0.04 * w), max(1.0, 0.04 * h)
        sides = (
            # inner strip, outer strip, distance of the edge from the photo border
            ((x1, y1, np.minimum(x1 + tx, x2), y2), (np.maximum(x1 - tx, 0), y1, x1, y2), x1 / ramp_x),
            ((np.maximum(x2 - tx, x1), y1, x2, y2), (x2, y1, np.minimum(x2 + tx, w), y2), (w - x2) / ramp_x),
            ((x1, y1, x2, np.minimum(y1 + ty, y2)), (x1, np.maximum(y1 - ty, 0), x2, y1), y1 / ramp_y),
            ((x1, np.maximum(y2 - ty, y1), x2, y2), (x1, y2, x2, np.minimum(y2 + ty, h)), (h - y2) / ramp_y),
        )

        def strip_mean(box: tuple[np.ndarray, ...]) -> np.ndarray:
            bx1, by1, bx2, by2 = box
            area = ((bx2 - bx1) * (by2 - by1)).astype(np.float64)
            total = sat[_C, by2, bx2] - sat[_C, by1, bx2] - sat[_C, by2, bx1] + sat[_C, by1, bx1]
            return np.where(area > 0, total / np.maximum(area, 1.0), 0.0)

        cut = np.zeros(len(x1))
        for inner, outer, dist in sides:
            inside = strip_mean(inner)
            both = np.minimum(inside, strip_mean(outer))
            # On the photo's own border the world outside is unknown, not empty: the border cuts
            # whatever touches it (a bystander sliced by the frame), so the full frame is charged
            # like any crop and a crop that moves an edge off a sliced object gains.
            ramp = np.clip(dist, 0.0, 1.0)
            cut += np.minimum(3.0, (ramp * both + (1.0 - ramp) * inside) / (i_all + 1e-9))
        return cut / 4.0
