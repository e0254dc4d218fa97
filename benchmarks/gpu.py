"""GPU throughput of the CLIPCropping scorer path (fp16 autocast), batch sizes 1-64. Under 5 minutes.

    python benchmarks/gpu.py                      # CUDA if present
    python benchmarks/gpu.py --device cpu --quick # smoke test anywhere

Random RN50 weights (timing only: the scorers themselves refuse random weights, so this drives
the network directly, exactly as ``CLIPCroppingScorer.score`` does): synthetic 224x224 inputs,
each with the ~90 GAIC grid candidates + full frame of a 3:2 photo. Per batch size it times
(a) the full path: host tensor -> device, one trunk pass, fusion + MLP scores for every
candidate, CKE/AKE element scores for every candidate; (b) one bare ``encode_image`` for
reference. Prints a table and writes ``$OUT/gpu_bench.json`` when ``$OUT`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto", help="auto, cuda, cpu, mps")
    ap.add_argument("--quick", action="store_true", help="batch sizes 1,2 and two timed iterations (smoke test)")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    ap.add_argument("--seconds", type=float, default=4.0, help="time spent per batch size (after warm-up)")
    ap.add_argument("--fp32", action="store_true", help="disable fp16 autocast on CUDA")
    args = ap.parse_args()

    import torch

    from clipcrop_plugin.candidates import generate_candidates
    from clipcrop_plugin.model import ModelConfig, build_model, pick_device
    from clipcrop_plugin.model.device import autocast_for

    device = pick_device(args.device)
    sizes = [1, 2] if args.quick else [int(v) for v in args.batch_sizes.split(",") if v.strip()]
    budget = 0.0 if args.quick else args.seconds
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = build_model(ModelConfig())
    model.drop_text_tower()
    model.to(device).eval()
    build_s = time.perf_counter() - t0
    cands = generate_candidates(1200, 800)
    boxes = torch.tensor(cands.boxes, dtype=torch.float32) * torch.tensor([224 / 1200, 224 / 800] * 2)

    def amp():  # noqa: ANN202 - a fresh context per use
        return autocast_for(device) if not args.fp32 else torch.autocast(device.type, enabled=False)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()
        elif device.type == "mps":
            torch.mps.synchronize()

    def full(x_host: torch.Tensor, b: list[torch.Tensor]) -> None:
        with torch.no_grad(), amp():
            x = x_host.to(device, non_blocking=True)
            fmap = model.features(x)
            scores = model.score_crops(fmap, b)
            elements = model.element_scores(fmap, b)
            torch.cat(scores).float().cpu()
            torch.cat(elements).float().cpu()

    def bare(x_host: torch.Tensor) -> None:
        with torch.no_grad(), amp():
            model.clip.visual(x_host.to(device, non_blocking=True)).float().cpu()

    def rate(fn, n: int) -> tuple[float, int]:  # noqa: ANN001
        fn()
        fn()  # warm-up: cudnn autotune, allocator
        sync()
        iters, start = 0, time.perf_counter()
        while True:
            fn()
            iters += 1
            sync()
            elapsed = time.perf_counter() - start
            if (args.quick and iters >= 2) or (not args.quick and elapsed >= budget and iters >= 3):
                return n * iters / elapsed, iters

    rows = []
    for n in sizes:
        x = torch.randn(n, 3, 224, 224)
        if device.type == "cuda":
            x = x.pin_memory()
        b = [boxes.to(device) for _ in range(n)]
        try:
            pps, iters = rate(lambda: full(x, b), n)
            bare_pps, _ = rate(lambda: bare(x), n)
        except torch.OutOfMemoryError:
            print(f"batch {n}: out of memory, stopping")
            break
        mem = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
        rows.append({"batch": n, "photos_per_s": pps, "bare_encode_image_per_s": bare_pps, "iters": iters,
                     "candidates_per_photo": len(cands), "max_gpu_mem_mb": mem})
        print(f"batch {n:>3}: {pps:9.1f} photos/s  ({pps * len(cands):10.0f} candidates/s)   bare encode_image "
              f"{bare_pps:9.1f}/s   ratio {bare_pps / pps:5.2f}" + (f"   GPU mem {mem:.0f} MB" if mem else ""), flush=True)
    info = {"device": str(device), "name": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "autocast_fp16": device.type == "cuda" and not args.fp32,
            "build_seconds": build_s, "rows": rows}
    print(json.dumps(info))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_bench.json").write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
