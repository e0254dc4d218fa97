"""Embedding clipcrop in a gallery app: the Python facade and its hooks, end to end.

    python examples/embed_in_gallery.py                # on the sample photos, in a temp folder
    python examples/embed_in_gallery.py ~/Pictures/trip --db /tmp/gallery.sqlite3

What a host application does with :class:`clipcrop_plugin.api.Library`:

1. open the crop database (its own file, or the user's clipcrop database);
2. register a hook plugin so the gallery hears about scores and labels as they happen;
3. suggest crops for new photos (stored), and for an in-memory PIL image (not stored);
4. show the best crop with its explanation; list the library by improvement;
5. send back what the user chose (accept / adjusted box), which `clipcrop-train personalize` learns from;
6. write the chosen crop as an XMP sidecar that Lightroom / darktable / digiKam read.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from clipcrop_plugin.api import Library
from clipcrop_plugin.hooks import hookimpl, make_plugin_manager
from clipcrop_plugin.suggest import iter_photo_paths


class GalleryHooks:
    """What a gallery would do on each event: here, print it."""

    @hookimpl
    def photo_scored(self, photo_path: str, suggestion: Any) -> None:
        state = "scored" if suggestion.ok else f"failed ({suggestion.error})"
        print(f"  [hook] {Path(photo_path).name}: {state}")

    @hookimpl
    def label_recorded(self, photo_path: str, label: dict[str, Any]) -> None:
        print(f"  [hook] {Path(photo_path).name}: user said {label['kind']} {label['box']}")

    @hookimpl
    def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
        print(f"  [hook] {Path(photo_path).name}: {'cleared' if cleared else 'wrote'} {', '.join(written)}")


def sample_photos(folder: Path) -> list[Path]:
    sys.path.insert(0, str(Path(__file__).parent))
    from make_sample_library import make_library

    return make_library(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", type=Path, help="photos to use (default: the sample photos)")
    ap.add_argument("--db", default=None, help="database URL or SQLite path (default: a temporary file)")
    ap.add_argument("--scorer", default="auto", help="auto, heuristic, zeroshot, clipcropping")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="clipcrop-gallery-"))
    photos = sorted(iter_photo_paths([args.folder])) if args.folder else sample_photos(work / "photos")
    if not photos:
        print(f"error: no photos under {args.folder}", file=sys.stderr)
        return 1
    db = args.db or f"sqlite:///{work / 'gallery.sqlite3'}"

    plugins = make_plugin_manager()  # also loads plugins installed under the "clipcrop" entry point
    plugins.register(GalleryHooks())
    with Library.open(db, scorer=args.scorer, plugins=plugins) as lib:
        print(f"scoring {len(photos)} photos with the {lib.scorer.name} scorer")
        for path in photos:
            lib.suggest(path, aspects=["1:1", "3:2"])

        print("\nbest crops, largest improvement first:")
        for p in lib.photos(sort="improvement", limit=5).items:
            c = p.crop
            why = ", ".join(f"{'+' if e.change >= 0 else '-'}{e.element}" for e in c.explanation)
            print(f"  #{p.id} {Path(p.path).name:<24} {c.aspect:>5} box={list(c.box)} "
                  f"gain={c.improvement:+.3f}  ({why})")

        top = lib.photos(limit=1).items[0]
        print(f"\nthe user accepts the best crop of {Path(top.path).name} ...")
        lib.record_label(top.id, "accept", source="gallery")
        print("... and nudges the square crop of the next photo by hand:")
        second = lib.photos(limit=2, aspect="1:1").items[1]
        sx1, sy1, sx2, sy2 = second.crop.box
        lib.record_label(second.id, "box", aspect="1:1", box=(sx1 + 8, sy1 + 8, sx2 - 8, sy2 - 8), source="gallery")

        print("\nwriting the accepted crop as XMP for the gallery/raw editor:")
        lib.write_metadata(top.id)

        print("\nan image the gallery holds in memory (not stored):")
        with Image.open(photos[0]) as im:
            s = lib.suggest_image(im, aspects=["16:9"], name="preview-of-" + photos[0].name)
        print(f"  best 16:9 crop {list(s.best('16:9').box)} of {s.info.width}x{s.info.height}")

        print(f"\nlabels recorded: {[(x.kind, x.source) for x in lib.labels()]}")
    print(f"database: {db}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
