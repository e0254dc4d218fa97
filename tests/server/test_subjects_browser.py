"""Subjects drawn on the review grid and the photo page, in a real headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from support.browser import ARGS, CHROMIUM, wait_js
from support.server import LiveServer

from clipcrop_plugin.api import Library
from clipcrop_plugin.config import Settings
from clipcrop_plugin.hooks import make_plugin_manager
from clipcrop_plugin.server import create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian package chromium; CI installs it)"),
]


@pytest.fixture()
def astronaut_library(tmp_path: Path) -> Iterator[tuple[Library, dict]]:
    data = pytest.importorskip("skimage.data")
    pytest.importorskip("cv2")
    folder = tmp_path / "photos"
    folder.mkdir()
    path = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=92)
    lib = Library.open(f"sqlite:///{tmp_path / 'lib.sqlite3'}", settings=Settings(), scorer="heuristic",
                       plugins=make_plugin_manager(False))
    s = lib.suggest(path)
    assert s.ok and any(x.kind == "face" for x in s.subjects)
    yield lib, next(x for x in s.subjects if x.kind == "face").to_dict()
    lib.close()


def test_subjects_outlined_on_grid_and_photo_page(astronaut_library, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    lib, face = astronaut_library
    app = create_app(lib, thumbnail_dir=tmp_path / "thumbs")
    with sync_api.sync_playwright() as p, LiveServer(app) as live:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(live.url + "/")
        wait_js(page, "() => document.querySelectorAll('.card .subject.face').length === 1")
        outline = page.locator(".card .subject.face").bounding_box()
        frame = page.locator(".card .frame").bounding_box()
        x1, y1, x2, y2 = face["box"]
        # Where the face is in the 512 px photo, scaled to the frame on screen (within 2 px).
        assert abs(outline["x"] - (frame["x"] + x1 / 512 * frame["width"])) <= 2
        assert abs(outline["y"] - (frame["y"] + y1 / 512 * frame["height"])) <= 2
        assert abs(outline["width"] - (x2 - x1) / 512 * frame["width"]) <= 2
        assert page.locator(".card .subject.face span").inner_text() == "face"
        # The outline never takes the pointer: the crop under it still gets the drag.
        cx, cy = outline["x"] + outline["width"] / 2, outline["y"] + outline["height"] / 2
        under = page.evaluate(f"() => document.elementFromPoint({cx}, {cy}).className")
        assert "subject" not in under
        page.screenshot(path=str(tmp_path / "grid.png"))

        page.goto(live.url + f"/photo/{lib.photos().items[0].id}")
        wait_js(page, "() => document.querySelectorAll('#preview .subject.face').length === 1")
        assert page.locator("#preview .subject.face span").inner_text() == "face"
        # Candidate thumbnails keep the outlines but not the words.
        wait_js(page, "() => document.querySelectorAll('#cands .subject').length > 0")
        assert page.locator("#cands .subject span").count() == 0
        page.screenshot(path=str(tmp_path / "photo.png"))
        browser.close()
    assert not errors, errors
