"""Time one stage-3 (cropping) training epoch on GAICD-sized synthetic data.

Self-contained: no downloads, no data on disk. Images are rendered in memory by the same
generator as ``trainer.synthetic`` (a bright subject on a textured background, every crop of
GAIC's 12x12 anchor grid with its synthetic MOS), already at the trunk's 224x224 input, so the
timing is the network's (trunk forward/backward, RoI/RoDAlign, head, AdamW step), not JPEG decoding.

Default: RN50 tower with random weights (the pretrained ones cannot be downloaded here; speed does
not depend on the values), AMP fp16 on CUDA, batch 1 image per step with all its ~86 valid crops as
in GAIC, the paper's AdamW lr 5e-6. GAICD-1236 has 1036 training images: the script times
``--images`` steps (default 1036, the full epoch) after ``--warmup`` untimed steps; with a smaller
``--images`` it extrapolates linearly to 1036 and says so.

    python benchmarks/gpu_train.py                      # CUDA, RN50, full epoch
    python benchmarks/gpu_train.py --device cpu --quick # smoke test: tiny tower, 8 images

Prints images/s and the epoch time; writes ``$OUT/gpu_train.json`` when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipcrop_plugin.model import ModelConfig, build_model, pick_device  # noqa: E402
from trainer.losses import cropping_loss  # noqa: E402
from trainer.modeling import tiny_config  # noqa: E402
from trainer.stages import trainable_parameters  # noqa: E402
from trainer.synthetic import gaic_grid, render_subject_image, subject_mos  # noqa: E402

GAICD_TRAIN_IMAGES = 1036


def make_batch(rng: np.random.Generator, size: int, n_pool: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``n_pool`` synthetic images at input size (uint8) with their valid boxes (input px) and MOS."""
    pool = []
    for _ in range(n_pool):
        w, h = (320, 240) if rng.random() < 0.5 else (240, 320)
        image, cx, cy, r = render_subject_image(rng, w, h)
        boxes, valid = gaic_grid(w, h)
        mos = subject_mos(boxes, cx, cy, r, rng)[valid]
        boxes = boxes[valid] * np.array([size / w, size / h] * 2)
        pixels = torch.from_numpy(np.asarray(image.resize((size, size))).copy()).permute(2, 0, 1).contiguous()
        pool.append((pixels, torch.from_numpy(boxes).float(), torch.from_numpy(mos).float()))
    return pool


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny tower, 8 images: a CPU smoke test")
    ap.add_argument("--images", type=int, default=None, help="timed images (default 1036, quick: 8)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default 10, quick: 1)")
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--clip-model", default="RN50")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (reported)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    n_images = args.images or (8 if args.quick else GAICD_TRAIN_IMAGES)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 10)
    config = tiny_config(128) if args.quick else ModelConfig(clip_model=args.clip_model, clip_pretrained="")
    torch.manual_seed(0)
    t_build = time.perf_counter()
    model = build_model(config).to(device).eval()  # eval: frozen BatchNorm, as in training
    build_s = time.perf_counter() - t_build
    params = trainable_parameters(model, "cropping")
    opt = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01)
    use_amp = device.type == "cuda" and not args.no_amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    rng = np.random.default_rng(0)
    # A pool of distinct images cycled through the epoch: rendering 1036 full images would time
    # the generator, not the network.
    pool = make_batch(rng, config.image_size, min(64, n_images + warmup))
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=device).view(1, 3, 1, 1)
    crops = []

    def step(i: int) -> float:
        pixels, boxes, mos = pool[i % len(pool)]
        x = (pixels.unsqueeze(0).to(device, non_blocking=True).float() / 255.0 - mean) / std
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
            (pred,) = model.score_crops(model.features(x), [boxes.to(device)])
            loss = cropping_loss(pred, mos.to(device))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        crops.append(len(mos))
        return float(loss.detach()) if i % 50 == 0 else 0.0

    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    crops.clear()
    t0 = time.perf_counter()
    for i in range(n_images):
        step(warmup + i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    ips = n_images / elapsed
    epoch_s = GAICD_TRAIN_IMAGES / ips
    result = {
        "benchmark": "stage-3 training epoch (synthetic GAICD-sized data)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "clip_model": "tiny (test tower)" if args.quick else args.clip_model,
        "weights": "random init",
        "input": f"{config.image_size}x{config.image_size}",
        "amp_fp16": use_amp,
        "batch_images": 1,
        "mean_crops_per_image": float(np.mean(crops)) if crops else 0.0,
        "timed_images": n_images,
        "warmup_steps": warmup,
        "seconds": round(elapsed, 3),
        "images_per_s": round(ips, 2),
        "epoch_seconds_1036": round(epoch_s, 1),
        "extrapolated": n_images != GAICD_TRAIN_IMAGES,
        "paper_60_epochs_minutes": round(60 * epoch_s / 60, 1),
        "model_build_s": round(build_s, 2),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "peak_gpu_mem_mib": round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None,
    }
    note = " (extrapolated from %d images)" % n_images if result["extrapolated"] else ""
    print(f"{result['clip_model']} on {result['device_name']} ({device}), AMP {'on' if use_amp else 'off'}: "
          f"{ips:.1f} images/s, one GAICD-1236 epoch (1036 images) {epoch_s:.1f} s{note}; "
          f"60 epochs {result['paper_60_epochs_minutes']} min")
    out = os.environ.get("OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_train.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
