"""The subject stage alone: does it find the labelled subjects, and what does it cost per photo?

Usage: python benchmarks/subjects.py [--corpus DIR] [--repeat N] [--json FILE]

Quality: every photo of ``benchmarks/data/quality_boxes.json`` (the labelled set of
``benchmarks/quality.py``: scikit-image's public-domain photos, real camera photos read in place
from ``../shared/corpus/exif-samples/jpg``, synthetic scenes) goes through intake and
``detect_subjects``. Per photo: the kinds found, the best IoU of a detection with the labelled
subject box, the best share of the labelled box that one trusted detection covers, and the same
for the main subject the crop guard protects (``candidates.subject_focus``: the main people with
their heads, or the strongest salient object). A detection is trusted when the guard obeys it:
faces and people always, a salient box from ``guard.SALIENT_TRUST`` up. Summary: the share of
labelled subjects that a trusted detection (and the guard's main subject) covers >= 90%, how
tight that main subject is (its IoU with the label: a whole-frame box covers everything and
helps no crop), and false detections: trusted boxes with under a quarter of their own area on
the labelled subject and under half of the subject inside them (a loose box around the subject is
counted by the IoU, not here; on photos labelled "no single subject", faces and people only).

Speed: the stage's ms/photo (best of ``--repeat`` per photo, after one warm-up) on the labelled
set and on every JPEG of the corpus (``../shared/corpus/exif-samples``, 88 files), mean and worst.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples"
COVER = 0.9  # the quality benchmark's criterion: a crop keeps >= 90% of the subject
FALSE_INSIDE = 0.25  # a trusted box with less of its own area on the subject than this is a false detection


def _inter(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy


def _area(a: tuple[float, ...]) -> float:
    return max(1e-9, (a[2] - a[0]) * (a[3] - a[1]))


def timed(loaded: object, repeat: int) -> tuple[list, float]:
    """The subjects of one loaded photo and the best of ``repeat`` timings in ms."""
    from clipcrop_plugin.subjects import detect_subjects

    best, found = float("inf"), []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        found = detect_subjects(loaded)  # type: ignore[arg-type]
        best = min(best, (time.perf_counter() - t0) * 1000)
    return found, best


def labelled(corpus_jpg: Path, repeat: int) -> tuple[list[dict[str, object]], list[str]]:
    """One row per labelled photo (see the module doc)."""
    from quality import load_set

    from clipcrop_plugin.candidates import subject_focus
    from clipcrop_plugin.guard import SALIENT_TRUST
    from clipcrop_plugin.imaging import load_image
    from clipcrop_plugin.results import box_iou
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer

    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        photos, skipped = load_set(Path(tmp), corpus_jpg)
        first = True
        for p in photos:
            li = load_image(p.path, min_side=HeuristicScorer.min_side)
            if first:
                timed(li, 1)  # the cascades load once per thread
                first = False
            subs, ms = timed(li, repeat)
            trusted = [s for s in subs if s.kind != "salient" or s.score >= SALIENT_TRUST]
            row: dict[str, object] = {
                "id": p.id, "what": p.what, "ms": round(ms, 2),
                "found": [{"kind": s.kind, "box": list(s.box), "score": s.score} for s in subs],
            }
            focus = subject_focus(subs, p.width, p.height) if subs else None
            focus_trusted = focus is not None and (focus.people or focus.confidence >= SALIENT_TRUST)
            if p.subject is None:
                row["false"] = sum(1 for s in trusted if s.kind != "salient")
            else:
                lab = p.subject
                row["best_iou"] = round(max((box_iou(s.box, lab) for s in subs), default=0.0), 3)
                row["best_cover"] = round(max((_inter(s.box, lab) / _area(lab) for s in trusted), default=0.0), 3)
                if focus_trusted and focus is not None:
                    row["main_cover"] = round(_inter(focus.main, lab) / _area(lab), 3)
                    row["main_iou"] = round(box_iou(focus.main, lab), 3)
                else:
                    row["main_cover"] = row["main_iou"] = 0.0
                row["false"] = sum(1 for s in trusted if _inter(s.box, lab) / _area(s.box) < FALSE_INSIDE
                                   and _inter(s.box, lab) / _area(lab) < 0.5)
            rows.append(row)
    return rows, skipped


def corpus_times(corpus: Path, repeat: int) -> tuple[list[float], dict[str, int], int]:
    from clipcrop_plugin.imaging import load_image
    from clipcrop_plugin.scoring.heuristic import HeuristicScorer

    paths = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file())
    times: list[float] = []
    kinds: dict[str, int] = {}
    for p in paths:
        try:
            li = load_image(p, min_side=HeuristicScorer.min_side)
        except Exception:  # unreadable files are the pipeline's business, not timed here
            continue
        subs, ms = timed(li, repeat)
        times.append(ms)
        for s in subs:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
    return times, kinds, len(paths)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="exif-samples folder")
    parser.add_argument("--repeat", type=int, default=3, help="timings per photo; the best counts")
    parser.add_argument("--json", type=Path, help="write every row and the summary here")
    args = parser.parse_args(argv)
    from clipcrop_plugin.subjects import default_detector

    if not args.corpus.is_dir():
        print(f"error: corpus not found: {args.corpus}", file=sys.stderr)
        return 1
    detector = default_detector().describe()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"subject stage: {detector}; {os.cpu_count()} CPUs, load average {load:.2f} at start")

    rows, skipped = labelled(args.corpus / "jpg", args.repeat)
    for s in skipped:
        print(f"  skipped {s}")
    print(f"\n{'photo':<20} {'kinds found':<34} {'bestIoU':>7} {'cover':>6} {'main':>6} {'mainIoU':>7} {'false':>5} {'ms':>6}")
    for r in rows:
        kinds = ",".join(f"{f['kind']}:{f['score']:.2f}" for f in r["found"])  # type: ignore[index, union-attr]
        cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("best_iou", "best_cover", "main_cover", "main_iou")]
        print(f"{r['id']:<20} {kinds[:34]:<34} {cells[0]:>7} {cells[1]:>6} {cells[2]:>6} {cells[3]:>7} "
              f"{r['false']:>5} {r['ms']:>6.1f}")
    with_subject = [r for r in rows if "best_cover" in r]
    n = max(1, len(with_subject))
    covered = sum(1 for r in with_subject if float(r["best_cover"]) >= COVER)  # type: ignore[arg-type]
    main_covered = sum(1 for r in with_subject if float(r["main_cover"]) >= COVER)  # type: ignore[arg-type]
    main_iou = sum(float(r["main_iou"]) for r in with_subject) / n  # type: ignore[arg-type]
    false = sum(int(r["false"]) for r in rows)  # type: ignore[call-overload]
    ms = [float(r["ms"]) for r in rows]  # type: ignore[arg-type]
    times, kinds, n_corpus = corpus_times(args.corpus, args.repeat)
    summary = {
        "labelled": len(with_subject),
        "covered_by_a_trusted_detection": covered / n,
        "covered_by_the_guards_main_subject": main_covered / n,
        "main_subject_mean_iou": main_iou,
        "false_detections": false,
        "labelled_ms_mean": sum(ms) / max(1, len(ms)),
        "labelled_ms_worst": max(ms, default=0.0),
        "corpus_photos": len(times),
        "corpus_ms_mean": sum(times) / max(1, len(times)),
        "corpus_ms_worst": max(times, default=0.0),
        "corpus_kinds": kinds,
    }
    print(f"\nlabelled subjects covered >= 90% by one trusted detection: {covered}/{len(with_subject)} "
          f"({100 * covered / n:.0f}%); by the guard's main subject: {main_covered}/{len(with_subject)} "
          f"({100 * main_covered / n:.0f}%), mean IoU of that main subject with the label {main_iou:.2f}")
    print(f"false detections (trusted, < {FALSE_INSIDE:.0%} on the subject): {false} on {len(rows)} photos")
    print(f"stage time, labelled set: {summary['labelled_ms_mean']:.1f} ms/photo mean, "
          f"{summary['labelled_ms_worst']:.1f} ms worst")
    print(f"stage time, corpus ({len(times)}/{n_corpus} JPEGs): {summary['corpus_ms_mean']:.1f} ms/photo mean, "
          f"{summary['corpus_ms_worst']:.1f} ms worst; found "
          + (", ".join(f"{v} {k}" for k, v in sorted(kinds.items())) or "nothing"))
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load_end:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
