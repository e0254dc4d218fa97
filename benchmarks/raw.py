"""Camera RAW and HEIC intake: photos/s and peak RSS per decode path, each against its peer.

RAW: DNGs generated here (tests/support/raw.py: a Bayer mosaic of a public-domain photo, 12-bit,
uncompressed, as pidng writes them) at a real sensor size, with and without an embedded JPEG
preview, go through ``load_image`` exactly as ``suggest``/``scan`` call it. The preview path is
reported against the half-size demosaic path of the same run.

HEIC: the corpus's HEIC files through ``load_image`` with libheif's thumbnail (when it covers the
scoring size) against today's full decode of the primary image (the thumbnail path switched off).

Every path runs in its own child process, so that "peak RSS" is that path's own high-water mark.

    .venv/bin/python benchmarks/raw.py [--size 6000x4000] [--count 4] [--min-side 224]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
CORPUS = ROOT.parent / "shared" / "corpus" / "exif-samples" / "heic"


def _hwm_mb() -> float:
    """This process's peak RSS (VmHWM: reset by exec, unlike ru_maxrss, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, paths: list[str], min_side: int, repeat: int) -> dict[str, float]:
    """Decode ``paths`` ``repeat`` times along ``mode``; photos/s and this process's peak RSS."""
    from clipcrop_plugin import heif as heif_mod
    from clipcrop_plugin import raw as raw_mod
    from clipcrop_plugin.imaging import load_image

    if mode == "heic-full":
        heif_mod.smallest_thumbnail = lambda *a, **kw: None  # type: ignore[assignment]
    sources = []
    base = _hwm_mb()
    t0 = time.perf_counter()
    for _ in range(repeat):
        for p in paths:
            if mode.startswith("raw"):
                _im, _h, source = raw_mod.load_raw(Path(p), min_side)
                sources.append(source)
            else:
                load_image(p, min_side=min_side)
    dt = time.perf_counter() - t0
    peak = _hwm_mb()
    return {"photos_per_s": len(paths) * repeat / dt, "ms_per_photo": 1000 * dt / (len(paths) * repeat),
            "peak_rss_mb": peak, "rss_growth_mb": peak - base, "paths": sorted(set(sources))}


def run_child(mode: str, paths: list[str], min_side: int, repeat: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--min-side", str(min_side),
                          "--repeat", str(repeat), *paths], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="6000x4000", help="stored sensor size of the generated DNGs (24 MP)")
    ap.add_argument("--preview", default="1620x1080", help="embedded JPEG preview size (a typical camera's)")
    ap.add_argument("--count", type=int, default=4, help="DNGs per path")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--min-side", type=int, default=224, help="scoring short side (clipcropping's 224)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.paths, a.min_side, a.repeat)))
        return

    import rawpy
    from support.raw import make_dng

    size = tuple(int(v) for v in a.size.split("x"))
    preview = tuple(int(v) for v in a.preview.split("x"))
    print(f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"LibRaw {'.'.join(map(str, rawpy.libraw_version))}, rawpy {rawpy.__version__}")
    with tempfile.TemporaryDirectory(prefix="clipcrop-raw-bench-") as tmp:
        t0 = time.perf_counter()
        with_pv = [str(make_dng(Path(tmp) / f"pv{i}.dng", (1, 3, 6, 8)[i % 4], preview=preview, size=size))  # type: ignore[arg-type]
                   for i in range(a.count)]
        without = [str(make_dng(Path(tmp) / f"raw{i}.dng", (1, 3, 6, 8)[i % 4], size=size))  # type: ignore[arg-type]
                   for i in range(a.count)]
        mb = os.path.getsize(with_pv[0]) / 1e6
        print(f"# {2 * a.count} DNGs of {size[0]}x{size[1]} ({mb:.0f} MB each) made in {time.perf_counter() - t0:.1f} s; "
              f"preview {preview[0]}x{preview[1]}; min_side {a.min_side}; {a.repeat} passes")
        pv = run_child("raw-preview", with_pv, a.min_side, a.repeat)
        dm = run_child("raw-demosaic", without, a.min_side, a.repeat)
    print("\n| RAW path | photos/s | ms/photo | peak RSS MB | added by decoding | decoded by |")
    print("|---|---|---|---|---|---|")
    for name, r in (("embedded preview", pv), ("half-size demosaic", dm)):
        print(f"| {name} | {r['photos_per_s']:.2f} | {r['ms_per_photo']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} | {','.join(r['paths'])} |")
    print(f"\npreview vs demosaic: {pv['photos_per_s'] / dm['photos_per_s']:.1f}x the photos/s, "
          f"{pv['peak_rss_mb'] / dm['peak_rss_mb']:.2f}x the peak RSS, "
          f"{pv['rss_growth_mb'] / max(dm['rss_growth_mb'], 1e-3):.2f}x the RSS decoding adds")

    heics = sorted(str(p) for p in CORPUS.rglob("*") if p.suffix.lower() in (".heic", ".heif")) if CORPUS.is_dir() else []
    if not heics:
        print("\n(no HEIC corpus at ../shared/corpus/exif-samples/heic: HEIC part skipped)")
        return
    print(f"\n# HEIC: {len(heics)} corpus files ({', '.join(Path(h).name for h in heics)})")
    small = run_child("heic-thumb", heics, a.min_side, a.repeat)
    full = run_child("heic-full", heics, a.min_side, a.repeat)
    print("\n| HEIC path | photos/s | ms/photo | peak RSS MB | added by decoding |")
    print("|---|---|---|---|---|")
    for name, r in (("thumbnail when large enough", small), ("full primary decode (before)", full)):
        print(f"| {name} | {r['photos_per_s']:.2f} | {r['ms_per_photo']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} |")
    print(f"\nthumbnail vs full decode: {small['photos_per_s'] / full['photos_per_s']:.1f}x the photos/s, "
          f"{small['peak_rss_mb'] / full['peak_rss_mb']:.2f}x the peak RSS, "
          f"{small['rss_growth_mb'] / max(full['rss_growth_mb'], 1e-3):.2f}x the RSS decoding adds")
    for h in heics:
        one_s = run_child("heic-thumb", [h], a.min_side, 1)
        one_f = run_child("heic-full", [h], a.min_side, 1)
        print(f"  {Path(h).name}: {one_s['ms_per_photo']:.0f} ms vs {one_f['ms_per_photo']:.0f} ms, "
              f"{one_s['rss_growth_mb']:.0f} vs {one_f['rss_growth_mb']:.0f} MB added by decoding")


if __name__ == "__main__":
    main()
