"""Where the time goes in the CLIPCropping inference path on a GPU, per batch size.

    python benchmarks/gpu_profile.py [--batch-sizes 16,64]

Times the trunk, the fused head (score_crops) and the element scores (element_scores) apart,
with CUDA synchronisation around each, then prints torch.profiler's top operators for the
largest batch. Random RN50 weights, fp16 autocast, ~84 grid candidates per photo.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1,16,64")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    import torch

    from clipcrop_plugin.candidates import generate_candidates
    from clipcrop_plugin.model import ModelConfig, build_model, pick_device
    from clipcrop_plugin.model.device import autocast_for

    dev = pick_device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    model.drop_text_tower()
    model.to(dev).eval()
    cands = generate_candidates(1200, 800)
    base = torch.tensor(cands.boxes, dtype=torch.float32) * torch.tensor([224 / 1200, 224 / 800] * 2)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, reps: int = 5) -> float:  # noqa: ANN001
        fn()
        fn()
        sync()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - t) / reps

    sizes = [int(v) for v in args.batch_sizes.split(",")]
    for n in sizes:
        x = torch.randn(n, 3, 224, 224, device=dev)
        b = [base.to(dev) for _ in range(n)]
        with torch.no_grad(), autocast_for(dev):
            fmap = model.features(x)
            t_trunk = timed(lambda: model.features(x))
            t_head = timed(lambda: model.score_crops(fmap, b))
            t_elem = timed(lambda: model.element_scores(fmap, b))
        print(f"batch {n:>3}: trunk {t_trunk * 1e3 / n:7.3f} ms/photo   score_crops {t_head * 1e3 / n:7.3f}   "
              f"element_scores {t_elem * 1e3 / n:7.3f}", flush=True)

    n = sizes[-1]
    x = torch.randn(n, 3, 224, 224, device=dev)
    b = [base.to(dev) for _ in range(n)]
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch.no_grad(), autocast_for(dev):
        fmap = model.features(x)
        model.score_crops(fmap, b)
        model.element_scores(fmap, b)
        sync()
        with torch.profiler.profile(activities=acts) as prof:
            model.score_crops(fmap, b)
            model.element_scores(fmap, b)
            sync()
    key = "cuda_time_total" if dev.type == "cuda" else "cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=50))
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=50))


if __name__ == "__main__":
    main()
