"""Quality of the suggested crops: do best crops keep the subject, and when does the grid say "keep"?

Usage: python benchmarks/quality.py [--out DIR] [--scorer heuristic] [--corpus DIR] [--margins ...]

The labelled set is ``benchmarks/data/quality_boxes.json``: scikit-image's bundled public-domain
photos, real camera photos read from ``../shared/corpus/exif-samples/jpg`` (used in place, never
copied into the repository) and synthetic scenes drawn here, each with a subject box drawn by eye
(fractions of the upright photo; synthetic boxes are exact). Photos whose source is missing are
skipped and listed.

For every photo, ``clipcrop``'s pipeline (intake, subject detection when the subject stage is
installed, candidates, scorer, guard) suggests the grid crop and the best crop of 1:1, 4:5, 16:9
and 9:16; smartcrop.py (PyPI ``smartcrop``) finds its best crop of each ratio, without and with
face detection (smartcrop.js's documented use: faces from a detector added as "boost" regions;
here OpenCV's Haar frontal-face cascade and smartcrop.js's boost weight). Reported per set:

- keeps: the share of best crops that keep >= 90% of the subject's area, among photos where a
  crop of that ratio CAN keep 90% of it (a 16:9 crop of a standing person cannot); for the grid,
  "keep as is" keeps the subject by definition;
- keep share (grid only): the share of photos whose grid suggestion is "keep as is"; smartcrop
  always crops, so its "grid" row is its crop at the photo's own aspect ratio;
- HasCrop writes of crops that do not beat the full frame (``xmp.write_crop_metadata`` on a copy
  of every photo, sidecars checked): must be 0.

With ``--out DIR``: ``contact_sheet.jpg`` (our crops) and ``contact_sheet_smartcrop.jpg``, one
row per photo (the photo with its subject box, then each set's crop: green frame = keeps the
subject, red = cuts it, grey = the ratio cannot hold it) and ``quality.json`` with every number.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples" / "jpg"
BOXES = Path(__file__).resolve().parent / "data" / "quality_boxes.json"
RATIOS = ("1:1", "4:5", "16:9", "9:16")
SETS = ("grid",) + RATIOS
KEEP = 0.9
MARGINS = (-1.0, 0.0, 0.02, 0.05, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3)


@dataclass
class Photo:
    id: str
    path: Path
    width: int
    height: int
    subject: tuple[float, float, float, float] | None  # upright pixels
    what: str
    grid: str | None = None  # what a photographer expects of the grid set: "crop", "keep" or None (either)
    picture: tuple[int, int, int, int] | None = None  # the picture inside uniform borders, when it has them
    free: bool = True  # public-domain or synthetic (may go on a published contact sheet)


@dataclass
class Outcome:
    box: tuple[int, int, int, int]  # the crop applied (the full frame for "keep")
    keep: bool = False
    improvement: float | None = None
    flags: list[str] = field(default_factory=list)


# --- the labelled set -----------------------------------------------------------------------------

def _texture(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([60 + 40 * yy / h, 110 + 50 * yy / h, 60 + 30 * xx / w], axis=-1)
    small = rng.normal(0, 1, (h // 8 + 1, w // 8 + 1, 3)).astype(np.float32)
    noise = np.asarray(Image.fromarray(np.clip(small * 40 + 128, 0, 255).astype(np.uint8)).resize((w, h)),
                       dtype=np.float32) - 128
    return np.clip(base + noise * 0.35 + rng.normal(0, 6, (h, w, 3)), 0, 255)


def _ball(arr: np.ndarray, cx: float, cy: float, r: float) -> tuple[float, float, float, float]:
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
    inside = d <= r
    shade = np.clip(1.0 - 0.5 * ((xx - cx + r * 0.3) ** 2 + (yy - cy + r * 0.3) ** 2) / (r * r), 0.4, 1.0)
    arr[inside] = np.stack([225 * shade, 40 * shade, 35 * shade], axis=-1)[inside]
    return (cx - r, cy - r, cx + r + 1, cy + r + 1)


def synthetic(spec: str, out: Path, seed: int) -> tuple[float, float, float, float] | None:
    """Draw a synthetic scene: ``ball:WxH:cx,cy:r``, ``balls2:WxH:c1:c2:r``, ``plain:WxH``,
    ``letterbox:WxH:cx,cy:r:band`` (a ball between black bands of ``band`` of the height, top and
    bottom) or ``bystander:WxH:cx,cy:r:ex,ey`` (a ball, and a second one centred at ``ex,ey``,
    usually on the frame's edge so it is sliced; the subject is the first)."""
    kind, size, *rest = spec.split(":")
    w, h = (int(v) for v in size.split("x"))
    arr = _texture(w, h, seed)
    box = None
    short = min(w, h)
    if kind == "ball":
        cx, cy = (float(v) for v in rest[0].split(","))
        box = _ball(arr, cx * w, cy * h, float(rest[1]) * short)
    elif kind == "balls2":
        (ax, ay), (bx, by) = ((float(v) for v in c.split(",")) for c in rest[:2])
        r = float(rest[2]) * short
        a, b = _ball(arr, ax * w, ay * h, r), _ball(arr, bx * w, by * h, r)
        box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
    elif kind == "letterbox":
        cx, cy = (float(v) for v in rest[0].split(","))
        box = _ball(arr, cx * w, cy * h, float(rest[1]) * short)
        band = round(float(rest[2]) * h)
        arr[:band] = arr[h - band:] = 4.0
    elif kind == "bystander":
        cx, cy = (float(v) for v in rest[0].split(","))
        ex, ey = (float(v) for v in rest[2].split(","))
        box = _ball(arr, cx * w, cy * h, float(rest[1]) * short)
        _ball(arr, ex * w, ey * h, float(rest[1]) * short)
    Image.fromarray(arr.astype(np.uint8)).save(out, "JPEG", quality=92)
    return box


def load_set(work: Path, corpus: Path) -> tuple[list[Photo], list[str]]:
    """The labelled photos (skimage and synthetic ones written into ``work``) and what was skipped."""
    spec = json.loads(BOXES.read_text(encoding="utf-8"))
    photos, skipped = [], []
    for k, entry in enumerate(spec["photos"]):
        src: str = entry["source"]
        kind, _, rest = src.partition(":")
        frac = entry.get("subject")
        box_px = None
        if kind == "skimage":
            from skimage import data

            pixels = data.stereo_motorcycle()[0] if rest == "motorcycle" else getattr(data, rest)()
            pixels = np.asarray(pixels)
            if pixels.dtype == bool:
                pixels = pixels.astype(np.uint8) * 255
            path = work / f"{entry['id']}.jpg"
            Image.fromarray(pixels).convert("RGB").save(path, "JPEG", quality=95)
        elif kind == "corpus":
            path = corpus / rest
            if not path.is_file():
                skipped.append(f"{entry['id']}: {path} not found")
                continue
        elif kind == "synthetic":
            path = work / f"{entry['id']}.jpg"
            box_px = synthetic(rest, path, seed=k)
        else:
            skipped.append(f"{entry['id']}: unknown source {src}")
            continue
        with Image.open(path) as im:
            w, h = ImageOps.exif_transpose(im).size
        if box_px is None and frac is not None:
            box_px = (frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h)
        pf = entry.get("picture")  # a synthetic scene's own bands, as fractions
        picture = None if pf is None else (round(pf[0] * w), round(pf[1] * h), round(pf[2] * w), round(pf[3] * h))
        if "border" in entry:
            # Bands of one colour around the photo (a letterboxed still, a framed scan), drawn
            # here on a copy in the work folder: [top, bottom, left, right] as fractions of the
            # photo's height/width, and the band's grey level.
            top, bottom, left, right, level = entry["border"]
            t, b_, l_, r_ = round(top * h), round(bottom * h), round(left * w), round(right * w)
            with Image.open(path) as im:
                upright = ImageOps.exif_transpose(im).convert("RGB")
            canvas = Image.new("RGB", (w + l_ + r_, h + t + b_), (int(level),) * 3)
            canvas.paste(upright, (l_, t))
            path = work / f"{entry['id']}.jpg"
            canvas.save(path, "JPEG", quality=92)
            picture = (l_, t, l_ + w, t + h)
            if box_px is not None:
                box_px = (box_px[0] + l_, box_px[1] + t, box_px[2] + l_, box_px[3] + t)
            w, h = canvas.size
        photos.append(Photo(entry["id"], path, w, h, box_px, entry.get("what", ""), entry.get("grid"), picture,
                            free=kind != "corpus"))
    return photos, skipped


# --- measures -------------------------------------------------------------------------------------

def kept(box: tuple[float, ...], subject: tuple[float, ...]) -> float:
    """Share of the subject's area inside ``box``."""
    ix = max(0.0, min(box[2], subject[2]) - max(box[0], subject[0]))
    iy = max(0.0, min(box[3], subject[3]) - max(box[1], subject[1]))
    area = max(1e-9, (subject[2] - subject[0]) * (subject[3] - subject[1]))
    return ix * iy / area


def showing_border(outcome: Outcome, p: Photo) -> bool:
    """Whether a suggestion shows some of the photo's uniform border (over 0.5% of its area)."""
    if p.picture is None:
        return False
    b, pic = outcome.box, p.picture
    # The share of the crop inside the picture is the share of the picture inside the crop,
    # scaled by their areas.
    inside = kept(b, pic) * (pic[2] - pic[0]) * (pic[3] - pic[1]) / max(1e-9, (b[2] - b[0]) * (b[3] - b[1]))
    return 1.0 - inside > 0.005


def feasible(p: Photo, ratio: str) -> bool:
    """Whether some crop of ``ratio`` (the largest one, slid over the photo, or over the picture
    inside its border) keeps 90% of the subject."""
    if p.subject is None:
        return False
    if ratio == "grid":
        return True
    rw, rh = (int(v) for v in ratio.split(":"))
    # A crop must not show a uniform border, so it is slid over the picture inside it.
    px, py, pw, ph = (0, 0, p.width, p.height) if p.picture is None else (
        p.picture[0], p.picture[1], p.picture[2] - p.picture[0], p.picture[3] - p.picture[1])
    h = min(ph, pw * rh / rw)
    w = h * rw / rh
    best = 0.0
    for x in np.linspace(px, px + pw - w, 60):
        for y in np.linspace(py, py + ph - h, 60):
            best = max(best, kept((x, y, x + w, y + h), p.subject))
    return best >= KEEP


def ours(photos: list[Photo], scorer_name: str) -> tuple[dict[str, dict[str, Outcome]], dict[str, object], float]:
    from clipcrop_plugin.candidates import parse_aspect
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.results import configured_keep_margin
    from clipcrop_plugin.scoring.registry import load_scorer
    from clipcrop_plugin.suggest import suggest_paths

    scorer = load_scorer(scorer_name, settings=Settings(), device="cpu", weights=None)
    margin = configured_keep_margin()
    t0 = time.perf_counter()
    suggestions = list(suggest_paths([p.path for p in photos], scorer, [parse_aspect(r) for r in RATIOS]))
    elapsed = time.perf_counter() - t0
    out: dict[str, dict[str, Outcome]] = {}
    raw: dict[str, object] = {}
    for p, s in zip(photos, suggestions):
        if not s.ok:
            raise SystemExit(f"error: {p.id}: {s.error}")
        row: dict[str, Outcome] = {}
        g = s.best("grid")
        assert g is not None
        choice = s.choice("grid", margin)
        row["grid"] = Outcome((0, 0, p.width, p.height) if choice.keep else g.box, choice.keep, g.improvement,
                              list(g.flags))
        for r in RATIOS:
            c = s.best(r)
            assert c is not None
            row[r] = Outcome(c.box, False, c.improvement, list(c.flags))
        out[p.id] = row
        raw[p.id] = s
    return out, raw, elapsed


def _haar_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    import cv2

    gray = np.asarray(image.convert("L"))
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                     minSize=(max(12, min(gray.shape) // 20),) * 2)
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in (found if len(found) else [])]


def smartcrop_runs(photos: list[Photo], faces: bool) -> tuple[dict[str, dict[str, Outcome]], float]:
    """smartcrop.py's best crop per ratio (and at the photo's own ratio, for the "grid" row)."""
    from smartcrop import SmartCrop

    class Boosted(SmartCrop):  # type: ignore[misc]
        """smartcrop.js's boost: regions from a face detector add ``boost_weight`` importance."""

        boost_weight = 100.0
        boxes: list[tuple[float, float, float, float]] = []

        def precompute_features(self, features_image: Image.Image) -> np.ndarray:
            out = super().precompute_features(features_image)
            h, w = out.shape
            for fx1, fy1, fx2, fy2 in self.boxes:
                out[int(fy1 * h):max(int(fy1 * h) + 1, int(math.ceil(fy2 * h))),
                    int(fx1 * w):max(int(fx1 * w) + 1, int(math.ceil(fx2 * w)))] += self.boost_weight
            return out

    t0 = time.perf_counter()
    out: dict[str, dict[str, Outcome]] = {}
    for p in photos:
        with Image.open(p.path) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
        sc = Boosted()
        sc.boxes = ([(x1 / p.width, y1 / p.height, x2 / p.width, y2 / p.height) for x1, y1, x2, y2 in _haar_faces(image)]
                    if faces else [])
        row: dict[str, Outcome] = {}
        for r in SETS:
            rw, rh = (p.width, p.height) if r == "grid" else (int(v) for v in r.split(":"))
            top = sc.crop(image, rw, rh)["top_crop"]
            box = (int(top["x"]), int(top["y"]), int(top["x"] + top["width"]), int(top["y"] + top["height"]))
            full = box[2] - box[0] >= p.width - 1 and box[3] - box[1] >= p.height - 1
            row[r] = Outcome(box, keep=(r == "grid" and full))
        out[p.id] = row
    return out, time.perf_counter() - t0


def summarise(photos: list[Photo], runs: dict[str, dict[str, Outcome]]) -> dict[str, dict[str, float | int]]:
    table: dict[str, dict[str, float | int]] = {}
    for s in SETS:
        ok = n = keeps = 0
        for p in photos:
            o = runs[p.id][s]
            keeps += o.keep
            if p.subject is None or not feasible(p, s):
                continue
            n += 1
            ok += kept(o.box, p.subject) >= KEEP
        table[s] = {"photos": n, "keeps_subject": ok, "share": ok / n if n else float("nan"),
                    "keep_as_is": keeps / len(photos)}
    return table


def hascrop_writes(photos: list[Photo], raw: dict[str, object], work: Path) -> tuple[int, int, int]:
    """(photos, HasCrop sidecars written, of which for a grid crop not beating the full frame)."""
    from clipcrop_plugin.results import configured_keep_margin
    from clipcrop_plugin.xmp.writer import write_crop_metadata

    margin = configured_keep_margin()
    folder = work / "xmp"
    folder.mkdir()
    written = bad = 0
    for p in photos:
        s = raw[p.id]
        copy = folder / f"{p.id}{p.path.suffix}"
        shutil.copyfile(p.path, copy)
        s.path = str(copy)  # type: ignore[attr-defined]
        result = write_crop_metadata(copy, s, aspects=["grid"])  # type: ignore[arg-type]
        # Every sidecar naming there is (IMG.xmp is the default, IMG.jpg.xmp the other).
        sidecars = [copy.with_suffix(".xmp"), Path(str(copy) + ".xmp"), Path(result.path_written)]
        has = any(s.is_file() and b'HasCrop="True"' in s.read_bytes() for s in sidecars)
        written += has
        g = s.best("grid")  # type: ignore[attr-defined]
        bad += has and g.improvement < margin
        s.path = str(p.path)  # type: ignore[attr-defined]
        assert has != result.kept
    return len(photos), written, bad


# --- contact sheets -------------------------------------------------------------------------------

TILE = 150


def _tile(image: Image.Image, box: tuple[int, ...], colour: str, label: str) -> Image.Image:
    crop = image.crop(box)
    crop.thumbnail((TILE, TILE))
    tile = Image.new("RGB", (TILE + 8, TILE + 22), "white")
    tile.paste(crop, (4 + (TILE - crop.width) // 2, 4 + (TILE - crop.height) // 2))
    d = ImageDraw.Draw(tile)
    d.rectangle((2 + (TILE - crop.width) // 2, 2 + (TILE - crop.height) // 2,
                 5 + (TILE + crop.width) // 2, 5 + (TILE + crop.height) // 2), outline=colour, width=3)
    d.text((4, TILE + 8), label, fill="black")
    return tile


def contact_sheet(photos: list[Photo], runs: dict[str, dict[str, Outcome]], title: str, path: Path) -> None:
    rows = []
    for p in photos:
        with Image.open(p.path) as im:
            image = ImageOps.exif_transpose(im).convert("RGB")
        orig = image.copy()
        d = ImageDraw.Draw(orig)
        lw = max(2, min(p.width, p.height) // 150)
        if p.subject is not None:
            d.rectangle(tuple(int(v) for v in p.subject), outline=(0, 255, 255), width=lw)
        g = runs[p.id]["grid"]
        if not g.keep:
            d.rectangle(g.box, outline=(255, 200, 0), width=lw)
        tiles = [_tile(orig, (0, 0, p.width, p.height), "black", p.id[:22])]
        for s in SETS:
            o = runs[p.id][s]
            if p.subject is None:
                colour = "grey"
            elif not feasible(p, s):
                colour = "grey"
            else:
                colour = "green" if kept(o.box, p.subject) >= KEEP else "red"
            label = f"{s}: KEEP AS IS" if o.keep else f"{s}" + (f" {o.improvement:+.2f}" if o.improvement is not None else "")
            tiles.append(_tile(image, o.box, colour, label))
        row = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), "white")
        x = 0
        for t in tiles:
            row.paste(t, (x, 0))
            x += t.width
        rows.append(row)
    cols = 2
    per = math.ceil(len(rows) / cols)
    rw, rh = rows[0].width, rows[0].height
    sheet = Image.new("RGB", (cols * rw + 20, per * rh + 30), "white")
    ImageDraw.Draw(sheet).text((8, 8), title, fill="black")
    for i, row in enumerate(rows):
        sheet.paste(row, ((i // per) * (rw + 20), 30 + (i % per) * rh))
    sheet.save(path, "JPEG", quality=85)


def agreement(photos: list[Photo], decide: dict[str, bool]) -> dict[str, int]:
    """How a crop-or-keep decision per photo (``decide[id]`` True = keep) matches the eye's
    ``grid`` label: counts of crop/keep expected and given, over the photos labelled either way."""
    out = {"crop_crop": 0, "crop_keep": 0, "keep_keep": 0, "keep_crop": 0}
    for p in photos:
        if p.grid in ("crop", "keep"):
            out[f"{p.grid}_{'keep' if decide[p.id] else 'crop'}"] += 1
    out["labelled"] = sum(out.values())
    out["agree"] = out["crop_crop"] + out["keep_keep"]
    return out


def margin_table(photos: list[Photo], raw: dict[str, object]) -> list[tuple[float, float, float, dict[str, int]]]:
    """For candidate keep margins: (margin, share kept as is, share of grid suggestions that keep
    the subject, agreement with the eye's crop/keep labels)."""
    out = []
    labelled = [p for p in photos if p.subject is not None]
    for m in MARGINS:
        keep = 0
        ok = 0
        decide = {}
        for p in photos:
            g = raw[p.id].best("grid")  # type: ignore[attr-defined]
            k = g.improvement < m
            decide[p.id] = k
            keep += k
            if p.subject is not None:
                ok += k or kept(g.box, p.subject) >= KEEP
        out.append((m, keep / len(photos), ok / max(1, len(labelled)), agreement(photos, decide)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for the contact sheets and quality.json")
    parser.add_argument("--scorer", default="heuristic", help="clipcrop scorer (default: the weights-free heuristic)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="exif-samples jpg folder")
    parser.add_argument("--no-peer", action="store_true", help="skip smartcrop.py (quick runs while tuning)")
    parser.add_argument("--free-only", action="store_true",
                        help="only the public-domain and synthetic photos (for a contact sheet that may be published)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        photos, skipped = load_set(work, args.corpus)
        if args.free_only:
            photos = [p for p in photos if p.free]
        try:
            import clipcrop_plugin.subjects  # noqa: F401

            stage = "subject stage installed"
        except ImportError:
            stage = "NO subject stage (clipcrop_plugin.subjects missing): the guard sees no subjects"
        labelled = sum(p.subject is not None for p in photos)
        print(f"labelled set: {len(photos)} photos ({labelled} with a subject box), {len(skipped)} skipped; {stage}")
        for s in skipped:
            print(f"  skipped {s}")
        runs, raw, t_ours = ours(photos, args.scorer)
        if args.no_peer:
            sc_plain, t_sc, sc_faces, t_scf = runs, 0.0, runs, 0.0
        else:
            sc_plain, t_sc = smartcrop_runs(photos, faces=False)
            sc_faces, t_scf = smartcrop_runs(photos, faces=True)
        tables = {"clipcrop": summarise(photos, runs), "smartcrop": summarise(photos, sc_plain),
                  "smartcrop+faces": summarise(photos, sc_faces)}
        n, written, bad = hascrop_writes(photos, raw, work)

        print()
        print(f"best crops keeping >= 90% of the subject (photos where the ratio allows it); scorer {args.scorer}")
        print(f"{'set':<6} {'photos':>6} {'clipcrop':>9} {'smartcrop':>10} {'+faces':>8} {'ratio':>6}   {'grid keep-as-is share':>22}")
        for s in SETS:
            a, b, c = (tables[k][s] for k in ("clipcrop", "smartcrop", "smartcrop+faces"))
            ratio = a["share"] / max(b["share"], c["share"]) if max(b["share"], c["share"]) > 0 else float("nan")
            keep = (f"{a['keep_as_is']:.0%} (smartcrop {b['keep_as_is']:.0%}, +faces {c['keep_as_is']:.0%})"
                    if s == "grid" else "")
            print(f"{s:<6} {a['photos']:>6} {a['share']:>9.0%} {b['share']:>10.0%} {c['share']:>8.0%} {ratio:>5.2f}x   {keep}")
        tot = {k: sum(v[s]["keeps_subject"] for s in SETS) / max(1, sum(v[s]["photos"] for s in SETS))
               for k, v in tables.items()}
        print(f"{'all':<6} {sum(tables['clipcrop'][s]['photos'] for s in SETS):>6} {tot['clipcrop']:>9.0%} "
              f"{tot['smartcrop']:>10.0%} {tot['smartcrop+faces']:>8.0%}")
        print(f"\nHasCrop writes (grid, xmp.write_crop_metadata on copies): {written}/{n} photos, "
              f"{bad} for a crop that does not beat the full frame")
        ag = agreement(photos, {p.id: runs[p.id]["grid"].keep for p in photos})
        always_crop = agreement(photos, dict.fromkeys(runs, False))
        always_keep = agreement(photos, dict.fromkeys(runs, True))
        print(f"\ngrid crop or keep vs the eye ({ag['labelled']} photos labelled crop/keep): clipcrop agrees on "
              f"{ag['agree']} ({ag['agree'] / max(1, ag['labelled']):.0%}: crops {ag['crop_crop']} of "
              f"{ag['crop_crop'] + ag['crop_keep']} 'crop', keeps {ag['keep_keep']} of {ag['keep_keep'] + ag['keep_crop']} "
              f"'keep'); always crop (smartcrop) {always_crop['agree']}, always keep {always_keep['agree']}")
        wrong = [f"{p.id} (expected {p.grid})" for p in photos
                 if p.grid in ("crop", "keep") and (p.grid == "keep") != runs[p.id]["grid"].keep]
        print("  disagreements: " + (", ".join(wrong) or "none"))
        print("  not labelled either way, clipcrop: " + ", ".join(
            f"{p.id} {'keep' if runs[p.id]['grid'].keep else 'crop'}" for p in photos if p.grid not in ("crop", "keep")))
        print("\nkeep margin  keep-as-is share  grid suggestions keeping the subject  agrees with the eye")
        margins = margin_table(photos, raw)
        for m, share, ok, a in margins:
            print(f"{m:>11.2f}  {share:>16.0%}  {ok:>36.0%}  {a['agree']:>10}/{a['labelled']} "
                  f"(crop {a['crop_crop']}/{a['crop_crop'] + a['crop_keep']}, keep {a['keep_keep']}/{a['keep_keep'] + a['keep_crop']})")
        print(f"\ntime: clipcrop {t_ours:.1f} s (5 sets), smartcrop {t_sc:.1f} s, smartcrop+faces {t_scf:.1f} s "
              f"for {len(photos)} photos")
        bordered = [p for p in photos if p.picture is not None]
        if bordered:
            shows = {name: [(p.id, s) for p in bordered for s in SETS if showing_border(run[p.id][s], p)]
                     for name, run in (("clipcrop", runs), ("smartcrop", sc_plain), ("smartcrop+faces", sc_faces))}
            total = len(bordered) * len(SETS)
            print(f"\nbest crops showing a uniform border ({len(bordered)} bordered photos x {len(SETS)} sets, "
                  f"'keep as is' shows it too): clipcrop {len(shows['clipcrop'])}/{total}, "
                  f"smartcrop {len(shows['smartcrop'])}/{total}, +faces {len(shows['smartcrop+faces'])}/{total}")
            if shows["clipcrop"]:
                print("  clipcrop: " + ", ".join(f"{i} {s}" for i, s in shows["clipcrop"]))
        failures = [(p.id, s) for p in photos if p.subject is not None for s in SETS
                    if feasible(p, s) and kept(runs[p.id][s].box, p.subject) < KEEP]
        print("clipcrop best crops cutting the subject: " + (", ".join(f"{i} {s}" for i, s in failures) or "none"))
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            contact_sheet(photos, runs, f"clipcrop ({args.scorer}): original + subject (cyan) + grid crop (amber) | "
                          "grid 1:1 4:5 16:9 9:16 (green keeps the subject, red cuts it, grey: no subject / ratio cannot)",
                          args.out / "contact_sheet.jpg")
            contact_sheet(photos, sc_faces, "smartcrop.py with face boosts: same layout",
                          args.out / "contact_sheet_smartcrop.jpg")
            (args.out / "quality.json").write_text(json.dumps(
                {"scorer": args.scorer, "subject_stage": stage, "tables": tables,
                 "hascrop": {"photos": n, "written": written, "not_beating_full": bad},
                 "grid_agreement": ag, "margins": [{"margin": m, "keep_share": s, "keeps_subject": k, "agreement": a}
                                                   for m, s, k, a in margins],
                 "failures": failures, "skipped": skipped}, indent=1), encoding="utf-8")
            print(f"\nwrote {args.out}/contact_sheet.jpg, contact_sheet_smartcrop.jpg, quality.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
