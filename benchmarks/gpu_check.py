"""GPU correctness check: the CLIPCropping path gives the same scores on CUDA as on the CPU.

    python benchmarks/gpu_check.py            # needs CUDA; exits 1 on a mismatch
    python benchmarks/gpu_check.py --device cpu  # compares CPU with itself (smoke test)

RoDAlign and the RoI attention pool are pure PyTorch and must work on every device; this runs
the real RN50 config (random weights, fixed seed) on fresh random inputs with ~90 candidates per
image and reports ||gpu - cpu|| / ||cpu|| for the fused-head scores, the ten element scores and
RoD/RoI features, in fp32 and under fp16 autocast. Writes $OUT/gpu_check.json when $OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Relative-error bounds: fp32 kernels differ only by summation order; fp16 autocast keeps
# ~3 significant digits through the trunk.
FP32_TOL = 1e-3
FP16_TOL = 3e-2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=4)
    args = ap.parse_args()

    import torch

    from clipcrop_plugin.candidates import generate_candidates
    from clipcrop_plugin.model import ModelConfig, build_model, pick_device
    from clipcrop_plugin.model.align import rod_align, roi_align
    from clipcrop_plugin.model.device import autocast_for

    device = pick_device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    model.drop_text_tower()
    model.eval()
    cands = generate_candidates(1200, 800)
    base = torch.tensor(cands.boxes, dtype=torch.float32) * torch.tensor([224 / 1200, 224 / 800] * 2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.images, 3, 224, 224, generator=gen)
    boxes = [base + torch.rand(base.shape, generator=gen) for _ in range(args.images)]

    def run(dev: torch.device, fp16: bool) -> dict[str, torch.Tensor]:
        m = model.to(dev)
        ctx = autocast_for(dev) if fp16 else torch.autocast(dev.type, enabled=False)
        with torch.no_grad(), ctx:
            fmap = m.features(x.to(dev))
            b = [bb.to(dev) for bb in boxes]
            out = {
                "scores": torch.cat(m.score_crops(fmap, b)).float().cpu(),
                "elements": torch.cat(m.element_scores(fmap, b)).float().cpu(),
                "roi": roi_align(fmap.float(), b, 9, 32).float().cpu(),
                "rod": rod_align(fmap.float(), b, 9, 32).float().cpu(),
            }
        return out

    ref = run(torch.device("cpu"), False)
    report: dict[str, object] = {"device": str(device), "torch": torch.__version__,
                                 "name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                                 "candidates_per_image": len(cands), "images": args.images}
    ok = True
    for label, fp16, tol in (("fp32", False, FP32_TOL), ("fp16_autocast", True, FP16_TOL)):
        if fp16 and device.type != "cuda":
            continue
        got = run(device, fp16)
        errs = {k: float((got[k] - ref[k]).norm() / ref[k].norm().clamp_min(1e-12)) for k in ref}
        finite = all(bool(torch.isfinite(got[k]).all()) for k in got)
        # The head's ranking is what users see: the rank-1 candidate per image must agree.
        n = len(cands)
        same_top = [int(got["scores"][i * n:(i + 1) * n].argmax()) == int(ref["scores"][i * n:(i + 1) * n].argmax())
                    for i in range(args.images)]
        passed = finite and all(e <= tol for e in errs.values())
        ok = ok and passed
        report[label] = {"rel_errors": errs, "finite": finite, "same_top1": same_top, "tolerance": tol, "passed": passed}
        print(f"{label:14s} " + "  ".join(f"{k} {v:.2e}" for k, v in errs.items())
              + f"  top1 agree {sum(same_top)}/{len(same_top)}  {'PASS' if passed else 'FAIL'}", flush=True)
    print(json.dumps(report))
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
