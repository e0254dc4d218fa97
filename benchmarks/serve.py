"""Review page load time for a large library, measured in a real headless Chromium.

Builds a library of N photo files (default 2,000 JPEGs, 1024 px, cut from the scikit-image
sample photos so every file differs) and fills the database through the real ``Store`` API:
candidates from the real generator, ranked and explained by the real ``build_suggestion``;
only the scores are random (scoring 2,000 photos is not what this measures). Then it starts
``clipcrop serve`` in a subprocess, as a user would, and opens the review page in Chromium.

"First screen" = from navigation start until every card inside the viewport has its crop box
drawn and its thumbnail decoded (``img.complete && naturalWidth > 0``), read from
``performance.now()`` in the page. Each run uses a fresh browser context (empty HTTP cache).
Thumbnails are measured both ways: generated lazily on first request (cold: empty thumbnail
cache) and pre-generated (warm). Then the page is scrolled to the end (infinite scroll) and the
time and the main-thread long tasks (> 50 ms) are reported.

    .venv/bin/python benchmarks/serve.py                    # 2,000 photos
    .venv/bin/python benchmarks/serve.py --photos 500 --runs 3 --screenshot /tmp/clipcrop-review.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipcrop_plugin.candidates import generate_candidates, parse_aspect  # noqa: E402
from clipcrop_plugin.hashing import content_hash  # noqa: E402
from clipcrop_plugin.imaging import load_image  # noqa: E402
from clipcrop_plugin.scoring.base import ScoreResult  # noqa: E402
from clipcrop_plugin.server.thumbs import ThumbnailCache  # noqa: E402
from clipcrop_plugin.store import Store  # noqa: E402
from clipcrop_plugin.suggest import build_suggestion  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# The photos scikit-image ships inside its wheel (no download), as examples/make_sample_library.py uses.
SOURCES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "camera", "coins")

# Runs in the page from its first instant (an init script, so the page's CSP allows it) and
# checks the first-screen condition on every animation frame.
FIRST_SCREEN_JS = """
window.__first = null;
(function check() {
  const cards = [...document.querySelectorAll('.card')];
  const visible = cards.filter(c => c.getBoundingClientRect().top < innerHeight);
  const ready = visible.length > 0 && visible.every(c => c.querySelector('.crop')
      && c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0);
  if (ready) {
    const nav = performance.getEntriesByType('navigation')[0];
    window.__first = {t: performance.now(), n: visible.length, dcl: nav ? nav.domContentLoadedEventEnd : 0};
  } else {
    requestAnimationFrame(check);
  }
})();
"""


class _Scorer:
    name = "heuristic"
    weights_hash = None
    device = "cpu"


def make_files(folder: Path, n: int, rng: np.random.Generator) -> list[Path]:
    """``n`` distinct 1024 px JPEGs (random crops, flips and tints of the sample photos)."""
    import skimage.data

    bases = []
    for name in SOURCES:
        arr = getattr(skimage.data, name)()
        im = Image.fromarray(arr)
        bases.append(im.convert("RGB"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        im = bases[i % len(bases)]
        w, h = im.size
        f = rng.uniform(0.6, 1.0)
        cw, ch = int(w * f), int(h * f * rng.uniform(0.7, 1.2))
        ch = min(ch, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        tile = im.crop((x, y, x + cw, y + ch))
        if i % 3 == 1:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = 1024 / max(tile.size)
        tile = tile.resize((max(1, int(tile.width * scale)), max(1, int(tile.height * scale))))
        tint = np.array(tile, np.float32) * rng.uniform(0.85, 1.15, 3)
        tile = Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))
        path = folder / f"{i // 500:02d}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        tile.save(path, "JPEG", quality=85)
        out.append(path)
    return out


def fill_store(db_url: str, files: list[Path], rng: np.random.Generator) -> float:
    """Record one suggestion per file (grid + 1:1 + 16:9 sets, random scores); returns seconds."""
    t = time.perf_counter()
    aspects = (parse_aspect("1:1"), parse_aspect("16:9"))
    store = Store.open(db_url)
    batch = []
    for path in files:
        loaded = load_image(path, min_side=64)
        cands = generate_candidates(loaded.info.width, loaded.info.height, aspects, grid=True)
        n = len(cands)
        res = ScoreResult(rng.random(n, dtype=np.float32), rng.random((n, 10), dtype=np.float32))
        s = build_suggestion(loaded, cands, res, _Scorer())
        st = path.stat()
        batch.append((s, content_hash(path), st.st_mtime, st.st_size))
        if len(batch) == 250:
            store.record_suggestions(batch)
            batch = []
    if batch:
        store.record_suggestions(batch)
    store.close()
    return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(db_url: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "CLIPCROP_DATA_DIR": str(data_dir), "CLIPCROP_CONFIG": str(data_dir / "none.toml")}
    exe = Path(sys.executable).with_name("clipcrop")
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--db", db_url], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/api/info", timeout=2).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("error: clipcrop serve did not start")
            time.sleep(0.2)


def measure(browser, url: str, viewport: dict, *, screenshot: str | None = None,  # type: ignore[no-untyped-def]
            scroll: bool = False) -> dict:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.add_init_script("""window.__long = []; new PerformanceObserver(l => window.__long.push(
        ...l.getEntries().map(e => e.duration))).observe({type: 'longtask', buffered: true});""")
    page.add_init_script(FIRST_SCREEN_JS)
    page.goto(url + "/", wait_until="commit")
    deadline = time.monotonic() + 60
    while not (first := page.evaluate("() => window.__first")):
        if time.monotonic() > deadline:
            raise SystemExit("error: the first screen did not appear within 60 s")
        time.sleep(0.02)
    out = {"first_ms": first["t"], "dcl_ms": first["dcl"], "cards_on_screen": first["n"]}
    if screenshot:
        page.wait_for_timeout(300)
        page.screenshot(path=screenshot)
    if scroll:
        total = page.evaluate("() => fetch('/api/photos?limit=1').then(r => r.json()).then(j => j.total)")
        t0 = page.evaluate("performance.now()")
        while page.locator(".card").count() < total:
            page.mouse.wheel(0, 2400)
            page.wait_for_timeout(16)
        out["scroll_all_ms"] = page.evaluate("performance.now()") - t0
        out["cards"] = page.locator(".card").count()
        longs = page.evaluate("window.__long")
        out["long_tasks"] = len(longs)
        out["longest_task_ms"] = max(longs, default=0.0)
    context.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5, help="warm-thumbnail page loads (median reported)")
    ap.add_argument("--screenshot", default=None, help="save a PNG of the first screen here")
    ap.add_argument("--keep", default=None,
                    help="build the library in this folder and keep it (an existing one is reused)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"error: {CHROMIUM} is missing (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="clipcrop-serve-bench-"))
    rng = np.random.default_rng(0)
    db_url = f"sqlite:///{root / 'library.sqlite3'}"
    data = root / "data"
    if (root / "library.sqlite3").exists():  # --keep of an earlier run: reuse its library
        files = sorted((root / "photos").rglob("*.jpg"))
        print(f"library: reusing {len(files)} photos in {root}; cpu cores: {os.cpu_count()}", flush=True)
    else:
        t = time.perf_counter()
        files = make_files(root / "photos", args.photos, rng)
        files_s = time.perf_counter() - t
        store_s = fill_store(db_url, files, rng)
        print(f"library: {args.photos} photos ({files_s:.1f} s to write files, {store_s:.1f} s to fill the "
              f"store through Store.record_suggestions); cpu cores: {os.cpu_count()}", flush=True)
    shutil.rmtree(data / "cache", ignore_errors=True)

    viewport = {"width": 1280, "height": 900}
    proc, url = start_server(db_url, data)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            # Cold: no thumbnail exists yet; the first screen's thumbnails are generated on request.
            cold = measure(browser, url, viewport)
            # Warm: pre-generate every grid thumbnail (256 px: what a 1x screen's grid requests through
            # srcset), as a library looks after it has been scrolled through once.
            shutil.rmtree(data / "cache", ignore_errors=True)
            t = time.perf_counter()
            cache = ThumbnailCache(data / "cache" / "thumbs")
            for path in files:
                cache.get(path, content_hash(path), 256)
            pregen_s = time.perf_counter() - t
            made = len(list(cache.root.rglob("*.jpg")))
            warm = [measure(browser, url, viewport) for _ in range(args.runs)]
            made_during_warm = len(list(cache.root.rglob("*.jpg"))) - made
            last = measure(browser, url, viewport, screenshot=args.screenshot, scroll=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    firsts = [w["first_ms"] for w in warm]
    dcls = [w["dcl_ms"] for w in warm]
    print()
    print(f"{'measure (Chromium ' + str(viewport['width']) + 'x' + str(viewport['height']) + ')':<60} {'value':>12}")
    print("-" * 73)
    print(f"{'cards on the first screen':<60} {warm[0]['cards_on_screen']:>12}")
    print(f"{'first screen, thumbnails generated lazily (cold, 1 run)':<60} {cold['first_ms']:>9.0f} ms")
    print(f"{'pre-generating all grid thumbnails (256 px, one pass)':<60} {pregen_s:>10.1f} s")
    print(f"{'DOMContentLoaded, warm thumbnails (median of %d)' % len(warm):<60} {statistics.median(dcls):>9.0f} ms")
    print(f"{'first screen, warm thumbnails (median of %d)' % len(warm):<60} {statistics.median(firsts):>9.0f} ms")
    print(f"{'thumbnails the warm runs still had to make (should be 0)':<60} {made_during_warm:>12}")
    print(f"{'first screen, warm thumbnails (worst of %d)' % len(warm):<60} {max(firsts):>9.0f} ms")
    print(f"{'scroll through all %d cards (infinite scroll)' % last['cards']:<60} {last['scroll_all_ms']:>9.0f} ms")
    print(f"{'main-thread long tasks (> 50 ms) during load + scroll':<60} {last['long_tasks']:>12}")
    print(f"{'longest task':<60} {last['longest_task_ms']:>9.0f} ms")
    goal = "met" if statistics.median(firsts) < 1000 else "NOT met"
    print(f"\ngoal (first screen < 1 s, warm thumbnails): {goal}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
