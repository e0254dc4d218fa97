"""Benchmark the XMP writer on the EXIF sample corpus (SPEC 6; goal: < 5 ms per sidecar).

Suggestions are prepared in advance from each photo's header (sizes, orientation) so that only
the writer is timed. The corpus is copied to a temp folder first; nothing is written into it.

    .venv/bin/python benchmarks/xmp.py [--corpus ../shared/corpus/exif-samples] [--repeat 5]

Prints per-photo sidecar and embed times (median / mean / max over all photos and repeats) and
the exiftool view of one rotated photo's sidecar.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipcrop_plugin.results import Crop, ElementChange, PhotoInfo, Suggestion  # noqa: E402
from clipcrop_plugin.xmp import clear_crop_metadata, write_crop_metadata  # noqa: E402
from clipcrop_plugin.xmp.atomic import deferred_dir_sync  # noqa: E402

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
except ImportError:
    pass

SUFFIXES = {".jpg", ".jpeg", ".tif", ".tiff", ".heic", ".heif", ".png"}


def suggestion(path: Path) -> Suggestion | None:
    """A suggestion with a grid set and two ratio sets (3 ranked crops each) from the header."""
    try:
        with Image.open(path) as im:
            sw, sh = im.size
            exif = im.getexif()
    except Exception:  # noqa: BLE001 - unreadable samples are skipped, as intake would fail them
        return None
    tag = 0x0112 in exif
    o = int(exif.get(0x0112, 1)) if tag else 1
    o = o if 1 <= o <= 8 else 1
    w, h = (sh, sw) if o >= 5 else (sw, sh)
    info = PhotoInfo(str(path), w, h, sw, sh, o, tag, "")
    crops = []
    for aspect in ("grid", "1:1", "16:9"):
        for rank in range(1, 4):
            m = rank * 0.05
            box = (int(w * m), int(h * m), int(w * (1 - m)), int(h * (1 - m)))
            crops.append(Crop(aspect, box, 1.0 - m, rank, 0.1 - m,
                              [ElementChange("rule_of_thirds", 0.1), ElementChange("lighting", -0.04),
                               ElementChange("center", 0.02)]))
    crops.append(Crop("full", (0, 0, w, h), 0.9, 1, 0.0))
    return Suggestion(str(path), True, info=info, scorer="heuristic", weights_hash="bench", crops=crops)


def stats(ms: list[float]) -> str:
    return (f"median {statistics.median(ms):.2f} ms, mean {statistics.fmean(ms):.2f} ms, "
            f"max {max(ms):.2f} ms over {len(ms)} writes")


def copy_corpus(corpus: Path, tmp: Path) -> Path:
    work = tmp / "corpus"
    shutil.copytree(corpus, work)
    for p in work.rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return work


def prepare(work: Path) -> list[tuple[Path, Suggestion]]:
    return [(p, s) for p in sorted(work.rglob("*")) if p.suffix.lower() in SUFFIXES
            for s in [suggestion(p)] if s is not None]


def time_sidecars(prepared: list[tuple[Path, Suggestion]], repeat: int, batched: bool) -> list[float]:
    """Per-photo times of writing a fresh sidecar (the previous one is cleared untimed)."""
    ms: list[float] = []
    for _ in range(repeat):
        for p, _s in prepared:
            clear_crop_metadata(p, mode="sidecar")
        with deferred_dir_sync() if batched else contextlib.nullcontext():
            for p, s in prepared:
                t = time.perf_counter()
                write_crop_metadata(p, s)
                ms.append((time.perf_counter() - t) * 1000)
    return ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared" / "corpus" / "exif-samples"))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show", default="jpg/orientation/landscape_6.jpg", help="photo whose sidecar exiftool shows")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        print(f"error: corpus not found at {corpus}", file=sys.stderr)
        return 1
    shm = Path("/dev/shm")
    places = ([("tmpfs", str(shm))] if shm.is_dir() and os.access(shm, os.W_OK) else []) + [("disk", None)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; corpus {corpus}")
    for label, base in places:
        with tempfile.TemporaryDirectory(prefix="clipcrop-xmp-bench-", dir=base) as tmp:
            work = copy_corpus(corpus, Path(tmp))
            prepared = prepare(work)
            if label == "disk":
                print(f"{len(prepared)} readable corpus photos, copied to {tmp}")
                side = time_sidecars(prepared, args.repeat, batched=False)
                print(f"[disk] sidecar write, one at a time (file fsync + folder fsync + rename): {stats(side)}")
                print(f"  whole corpus: {sum(side) / args.repeat:.0f} ms per pass, "
                      f"{statistics.fmean(side):.2f} ms per photo")
                side = time_sidecars(prepared, args.repeat, batched=True)
                print(f"[disk] sidecar write, batched like `clipcrop xmp write` (folder fsync once per pass): "
                      f"{stats(side)}")
            else:
                side = time_sidecars(prepared, args.repeat, batched=False)
                print(f"[tmpfs] sidecar write, writer work only (fsync is free on tmpfs): {stats(side)}")
                continue
            upd: list[float] = []
            for p, s in prepared:
                t = time.perf_counter()
                write_crop_metadata(p, s)
                upd.append((time.perf_counter() - t) * 1000)
            print(f"sidecar update (merge into existing): {stats(upd)}")

            emb: list[float] = []
            sizes: list[int] = []
            for p, s in prepared:
                if p.suffix.lower() not in (".jpg", ".jpeg"):
                    continue
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    r = write_crop_metadata(p, s, mode="embed")
                    dt = (time.perf_counter() - t) * 1000
                    if r.mode_used == "embed":
                        emb.append(dt)
                sizes.append(p.stat().st_size)
            print(f"embedded write per JPEG ({len(sizes)} JPEGs, {statistics.median(sizes) / 1e6:.2f} MB median, "
                  f"{max(sizes) / 1e6:.2f} MB max): {stats(emb)}")

            shown = work / args.show
            exiftool = shutil.which("exiftool")
            if exiftool and shown.exists():
                sidecar = shown.with_suffix(".xmp")
                print(f"\n$ exiftool -XMP-crs:all -XMP-tiff:all {sidecar.name}   (EXIF orientation of "
                      f"{shown.name}: {suggestion(shown).info.orientation})")  # type: ignore[union-attr]
                out = subprocess.run([exiftool, "-XMP-crs:all", "-XMP-tiff:all", str(sidecar)], capture_output=True,
                                     text=True, check=False)
                print(out.stdout.rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
