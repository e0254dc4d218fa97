"""Speed and memory of ``clipcrop suggest`` (heuristic scorer) against smartcrop.py.

Usage: python benchmarks/suggest_vs_smartcrop.py [--corpus DIR] [--repeat N]

Speed: the same corpus JPEGs, in one run. Ours does everything ``clipcrop suggest`` does
(intake with EXIF orientation, the subject stage, all GAIC grid candidates plus the 1:1, 4:5 and
16:9 sets, the full frame, scoring, ranking and explanations), once with subject detection on (as
shipped: faces, profile faces, people and the salient region) and once with it off (the subject
stage returns nothing); smartcrop.py (PyPI ``smartcrop``, default settings) opens each photo like
its CLI (``ImageOps.exif_transpose``, RGB) and finds one 1:1 crop. smartcrop.py has no face
detection of its own (its JavaScript original takes faces from an outside detector), so it runs
one way only. Files smartcrop cannot read are skipped for all. Each side runs ``--repeat`` times,
interleaved; the best (lowest) wall time counts. The subject stage's own time per photo is
reported too.

Memory: a 24-megapixel JPEG (6000x4000) is written to a temp folder, and each side processes it
in a fresh subprocess; the peak resident set size (Linux ``VmHWM``, the high-water mark of this
process only; ``ru_maxrss`` can carry the parent's peak across exec) is reported before and after
the work, with the size of the image that was actually decoded for scoring.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples"
ASPECTS = ("1:1", "4:5", "16:9")


def corpus_jpegs(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())


def smartcrop_one(path: Path) -> int:
    """One photo through smartcrop.py the way its CLI does it; returns the candidates it scored."""
    from smartcrop import SmartCrop

    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode != "RGB":
            image = image.convert("RGB")
        result = SmartCrop().crop(image, 100, 100)
    return len(result["crops"])


def readable_by_smartcrop(paths: list[Path]) -> tuple[list[Path], list[str]]:
    ok, skipped = [], []
    for p in paths:
        try:
            smartcrop_one(p)
            ok.append(p)
        except Exception as exc:  # smartcrop's own failures decide what is benchmarked
            skipped.append(f"{p.name}: {type(exc).__name__}")
    return ok, skipped


def run_ours(paths: list[Path], subjects: bool = True) -> tuple[float, int, int, int, float]:
    """(seconds, candidates, photos ok, subjects found, CPU seconds) for the whole pipeline."""
    from clipcrop_plugin import suggest as pipeline
    from clipcrop_plugin.candidates import parse_aspect
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer

    scorer = HeuristicScorer()
    aspects = [parse_aspect(a) for a in ASPECTS]
    real = pipeline.detect_subjects
    if not subjects:
        pipeline.detect_subjects = lambda loaded: []  # type: ignore[assignment]
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        out = list(pipeline.suggest_paths(paths, scorer, aspects, batch_size=8))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        pipeline.detect_subjects = real  # type: ignore[assignment]
    candidates = sum(s.n_candidates for s in out)
    return elapsed, candidates, sum(1 for s in out if s.ok), sum(len(s.subjects) for s in out), cpu


def subject_stage_ms(paths: list[Path]) -> tuple[float, float, dict[str, int]]:
    """Mean and worst milliseconds of the subject stage alone per photo, and what it found."""
    from clipcrop_plugin.imaging import load_image
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer
    from clipcrop_plugin.subjects import detect_subjects

    loaded = []
    for p in paths:
        try:
            loaded.append(load_image(p, min_side=HeuristicScorer.min_side))
        except Exception:  # the pipeline reports these; here they are just not timed
            continue
    if loaded:
        detect_subjects(loaded[0])  # the cascades load once per thread
    times, kinds = [], {}
    for li in loaded:
        t0 = time.perf_counter()
        found = detect_subjects(li)
        times.append((time.perf_counter() - t0) * 1000)
        for s in found:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
    return (sum(times) / max(len(times), 1), max(times, default=0.0), kinds)


def run_smartcrop(paths: list[Path]) -> tuple[float, int, float]:
    c0, t0 = time.process_time(), time.perf_counter()
    candidates = sum(smartcrop_one(p) for p in paths)
    return time.perf_counter() - t0, candidates, time.process_time() - c0


def make_24mp_jpeg(folder: Path) -> Path:
    """A 6000x4000 JPEG with real structure (gradients, shapes, noise), like a camera file."""
    w, h = 6000, 4000
    rng = np.random.default_rng(1)
    small = np.zeros((h // 8, w // 8, 3), dtype=np.float32)
    yy, xx = np.mgrid[0 : h // 8, 0 : w // 8]
    small[..., 0] = 90 + 80 * xx / (w // 8)
    small[..., 1] = 120 + 60 * yy / (h // 8)
    small[..., 2] = 150
    small += rng.normal(0, 12, small.shape)
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    draw.ellipse((3700, 900, 4900, 2100), fill=(230, 60, 40))
    draw.rectangle((800, 2500, 2200, 3600), fill=(40, 40, 50))
    path = folder / "24mp.jpg"
    img.save(path, "JPEG", quality=90)
    return path


_MEMORY_CHILD = r"""
import json, resource, sys, time
def hwm_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
which, path = sys.argv[1], sys.argv[2]
from PIL import JpegImagePlugin
decoded_sizes = []
_load = JpegImagePlugin.JpegImageFile.load
def _spy(self):
    decoded_sizes.append("x".join(map(str, self.size)))  # the size the JPEG decoder produces
    return _load(self)
JpegImagePlugin.JpegImageFile.load = _spy
if which == "ours":
    from clipcrop_plugin.candidates import parse_aspect
    from clipcrop_plugin.imaging import load_image
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer
    from clipcrop_plugin.suggest import suggest_images
    base = hwm_mb()
    t0 = time.perf_counter()
    loaded = load_image(path, min_side=HeuristicScorer.min_side)
    (s,) = suggest_images([loaded], HeuristicScorer(), [parse_aspect(a) for a in ("1:1", "4:5", "16:9")])
    elapsed = time.perf_counter() - t0
    working = "x".join(map(str, loaded.image.size))
else:
    from PIL import Image, ImageOps
    from smartcrop import SmartCrop
    base = hwm_mb()
    t0 = time.perf_counter()
    with Image.open(path) as im:
        img = ImageOps.exif_transpose(im).convert("RGB")
        SmartCrop().crop(img, 100, 100)
    working = "x".join(map(str, img.size))
    elapsed = time.perf_counter() - t0
peak = hwm_mb()
print(json.dumps({"base_mb": base, "peak_mb": peak, "decoded": decoded_sizes[0], "working": working, "seconds": elapsed}))
"""


def memory(which: str, path: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, which, str(path)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="folder of photos (JPEGs are used)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the best counts")
    args = parser.parse_args(argv)

    if not args.corpus.is_dir():
        print(f"error: corpus not found: {args.corpus}", file=sys.stderr)
        return 1
    paths, skipped = readable_by_smartcrop(corpus_jpegs(args.corpus))
    print(f"corpus: {args.corpus}  {len(paths)} JPEGs ({len(skipped)} skipped: smartcrop cannot read them)")
    for s in skipped:
        print(f"  skipped {s}")
    from clipcrop_plugin.subjects import default_detector

    detector = default_detector().describe()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, one process, no thread limits set")
    print(f"subject stage: {detector}")

    on_best = off_best = smart_best = float("inf")
    on_cpu = off_cpu = smart_cpu = float("inf")
    ours_cands = smart_cands = ok = found = 0
    for _ in range(max(1, args.repeat)):  # interleaved, so load changes hit every side alike
        t, ours_cands, ok, found, cpu = run_ours(paths, subjects=True)
        on_best, on_cpu = min(on_best, t), min(on_cpu, cpu)
        t, _c, _o, _f, cpu = run_ours(paths, subjects=False)
        off_best, off_cpu = min(off_best, t), min(off_cpu, cpu)
        t, smart_cands, cpu = run_smartcrop(paths)
        smart_best, smart_cpu = min(smart_best, t), min(smart_cpu, cpu)
    n = len(paths)
    rows = [
        ("clipcrop suggest, subjects on (heuristic, grid+1:1+4:5+16:9)", on_best, ours_cands / n, on_cpu),
        ("clipcrop suggest, subjects off", off_best, ours_cands / n, off_cpu),
        ("smartcrop.py 0.5 (defaults, one 1:1 crop; no face detection)", smart_best, smart_cands / n, smart_cpu),
    ]
    print()
    # CPU per photo (all threads; best run) moves little with load, unlike the wall time: ours
    # runs intake, the subject stage and scoring on three threads, smartcrop.py on one.
    print(f"{'method':<62} {'photos':>6} {'seconds':>8} {'photos/s':>9} {'candidates/photo':>17} {'CPU ms/photo':>13}")
    for name, secs, cands, cpu in rows:
        print(f"{name:<62} {n:>6} {secs:>8.2f} {n / secs:>9.1f} {cands:>17.1f} {cpu / n * 1000:>13.1f}")
    print(f"speed ratio (ours / smartcrop, photos per second): subjects on {smart_best / on_best:.2f}x, "
          f"off {smart_best / off_best:.2f}x  ({ok}/{n} scored ok, {found} subjects found; "
          f"load average {os.getloadavg()[0]:.2f})")
    mean_ms, worst_ms, kinds = subject_stage_ms(paths)
    print(f"subject stage alone: {mean_ms:.1f} ms/photo mean, {worst_ms:.1f} ms worst; found "
          + (", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "nothing"))

    with tempfile.TemporaryDirectory() as tmp:
        big = make_24mp_jpeg(Path(tmp))
        print()
        print(f"24-megapixel JPEG (6000x4000, {big.stat().st_size / 1e6:.1f} MB file; full RGB decode = 72 MB):")
        print(f"{'method':<12} {'JPEG decoded at':>16} {'scored at':>10} {'peak RSS MB':>12} {'after imports MB':>17} {'seconds':>8}")
        for which in ("ours", "smartcrop"):
            m = memory(which, big)
            print(f"{which:<12} {m['decoded']:>16} {m['working']:>10} {m['peak_mb']:>12.1f} {m['base_mb']:>17.1f} {m['seconds']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
