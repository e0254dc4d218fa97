"""CPU benchmark of the CLIP scorers (RN50 at 224, random weights: fine for timing).

    .venv/bin/python benchmarks/model_cpu.py [--threads N] [--repeat 15] [--corpus DIR] [--photos 24]

1. Latency: scoring ONE photo with all its grid candidates (+ the full frame) and the ten
   element explanations, through the real scorer objects (clipcropping and zeroshot), as a
   ratio to one bare RN50 ``encode_image`` forward on a preprocessed 224x224 tensor, measured
   in the same process (medians). Goal: <= 1.25x. The scorers run the trunk BatchNorm-folded and
   channels-last on a CPU (``clipcrop_plugin/model/trunk.py``), the bare forward runs open_clip's
   modules; ``same-trunk`` is the ratio with the bare forward's trunk swapped for the scorer's own
   (bare - module trunk + scorer trunk, all three timed here): what the heads alone add.
2. Throughput: photos/s end to end from file to scores (load_image + generate_candidates +
   scorer.score in batches) over corpus JPEGs.
3. Peak RSS of a process that loads the clipcropping scorer and runs (1) and (2). Goal: < 1.5 GB.

``--scorers clipcropping,zeroshot,zeroshot@4`` adds zeroshot with ``zeroshot_rescore = 4`` (the
four best crops re-embedded from their own pixels): its ratio is the price of that setting.

Each scorer runs in its own fresh subprocess so its peak RSS is its own. Random weights are
written to a temp folder first (never into the user's model folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples"


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would include the parent's across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def _synthetic_photo(path: Path) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = (rng.random((800, 1200, 3)) * 255).astype("uint8")
    Image.fromarray(arr).save(path, quality=90)
    return path


def child(args: argparse.Namespace) -> None:
    """Measure one scorer in this (fresh) process and print a JSON line."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from clipcrop_plugin.candidates import generate_candidates
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.imaging import load_image
    from clipcrop_plugin.scoring.registry import load_scorer

    name, _, rescore = args.child.partition("@")
    settings = Settings(model_dir=args.model_dir, zeroshot_rescore=int(rescore or 0))
    scorer = load_scorer(name, settings=settings, device="cpu", weights=args.weights)
    visual = scorer.model.clip.visual if name == "clipcropping" else scorer.clip.visual
    loaded = load_image(args.photo, min_side=scorer.min_side)
    cands = generate_candidates(loaded.info.width, loaded.info.height)
    x = torch.randn(1, 3, 224, 224)
    from clipcrop_plugin.model.network import trunk_features

    def bare() -> None:
        with torch.no_grad():
            visual(x)  # == clip.encode_image(x): trunk + CLIP's attention pool

    def module_trunk() -> None:
        with torch.no_grad():
            visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(x)))))

    def own_trunk() -> None:
        with torch.no_grad():
            trunk_features(visual, x)  # the trunk as the scorers run it

    def scored() -> None:
        scorer.score([loaded], [cands])

    # Interleaved, so load from other processes on a shared machine hits all alike.
    runs = {"bare": bare, "module_trunk": module_trunk, "own_trunk": own_trunk, "score": scored}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for f in runs.values():
        f()
    for _ in range(args.repeat):
        for k, f in runs.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    t_bare, t_score = times["bare"], times["score"]

    photos = sorted(p for p in Path(args.corpus).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.photos] \
        if args.corpus and Path(args.corpus).is_dir() else []
    throughput = None
    if photos:
        start = time.perf_counter()
        done = 0
        for i in range(0, len(photos), args.batch):
            batch = []
            for p in photos[i:i + args.batch]:
                try:
                    batch.append(load_image(p, min_side=scorer.min_side))
                except Exception:  # a bad corpus file is skipped, as the pipeline would
                    continue
            if batch:
                scorer.score(batch, [generate_candidates(b.info.width, b.info.height) for b in batch])
                done += len(batch)
        throughput = done / (time.perf_counter() - start)
    rss_mb = _peak_rss_mb()
    med_b, med_s = statistics.median(t_bare), statistics.median(t_score)
    med_mt, med_ot = statistics.median(times["module_trunk"]), statistics.median(times["own_trunk"])
    print(json.dumps({"scorer": args.child, "candidates": len(cands), "bare_ms": med_b * 1e3, "score_ms": med_s * 1e3,
                      "module_trunk_ms": med_mt * 1e3, "own_trunk_ms": med_ot * 1e3,
                      "ratio": med_s / med_b, "ratio_min": min(t_score) / min(t_bare),
                      "ratio_same_trunk": med_s / (med_b - med_mt + med_ot), "photos": len(photos),
                      "photos_per_s": throughput,
                      "peak_rss_mb": rss_mb, "threads": torch.get_num_threads()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default); 1 keeps a shared machine's noise down")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--corpus", default=str(CORPUS))
    ap.add_argument("--photos", type=int, default=24, help="corpus photos for the throughput run")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--scorers", default="clipcropping,zeroshot")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--photo", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import torch

    from clipcrop_plugin.model import ModelConfig, build_model, save_checkpoint
    from clipcrop_plugin.model.testing import write_clip_weights

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads={'default' if not args.threads else args.threads}, load avg {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        config = ModelConfig()
        clip_file = write_clip_weights(tmp_path / "RN50-random.safetensors", config)
        from clipcrop_plugin.model.weights import load_state_file

        model = build_model(config, load_state_file(clip_file))
        ckpt = save_checkpoint(model, tmp_path / "random-rn50", provenance={
            "note": "random weights, benchmark only", "stage": "cropping",
            # declared a trained stage-3 model so the scorer accepts it: timing does not depend on the values
            "lineage": ["cropping"], "trunk": "pretrained"})
        del model
        photo = _synthetic_photo(tmp_path / "photo.jpg")
        weights = {"clipcropping": str(ckpt.path), "zeroshot": str(clip_file)}
        rows = []
        for name in [s.strip() for s in args.scorers.split(",") if s.strip()]:
            cmd = [sys.executable, __file__, "--child", name, "--weights", weights[name.partition("@")[0]],
                   "--model-dir", str(tmp_path / "m"),
                   "--photo", str(photo), "--repeat", str(args.repeat), "--corpus", args.corpus, "--photos", str(args.photos),
                   "--batch", str(args.batch), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                raise SystemExit(f"{name} benchmark failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'scorer':<13} {'cands':>5} {'bare ms':>8} {'score ms':>9} {'ratio':>6} {'min-ratio':>9} {'trunk ms':>13} "
          f"{'same-trunk':>10} {'photos/s':>9} {'peak RSS MB':>11}")
    for r in rows:
        pps = f"{r['photos_per_s']:.2f}" if r["photos_per_s"] else "-"
        trunks = f"{r['module_trunk_ms']:.0f}->{r['own_trunk_ms']:.0f}"
        print(f"{r['scorer']:<13} {r['candidates']:>5} {r['bare_ms']:>8.1f} {r['score_ms']:>9.1f} {r['ratio']:>6.2f} {r['ratio_min']:>9.2f} "
              f"{trunks:>13} {r['ratio_same_trunk']:>10.2f} {pps:>9} {r['peak_rss_mb']:>11.0f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
