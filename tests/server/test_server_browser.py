"""The review page in a real headless Chromium (Debian ``chromium`` driven by Playwright).

Opens the grid on a sample library, sees the crops drawn, accepts one with a click, adjusts
another by dragging a corner handle, rejects one with the keyboard, prefers a lower-ranked
candidate on the photo page, and checks that every label landed in the SQLite file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.browser import ARGS, CHROMIUM, wait_js, wait_until
from support.server import LiveServer, SampleLibrary

from clipcrop_plugin.server import create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (Debian package chromium; CI installs it)"),
]


@pytest.fixture()
def browser_page() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def test_review_grid_accept_drag_keyboard_and_photo_page(sample: SampleLibrary, tmp_path: Path,
                                                         browser_page) -> None:  # type: ignore[no-untyped-def]
    page = browser_page
    app = create_app(sample.library, thumbnail_dir=tmp_path / "thumbs")
    with LiveServer(app) as live:
        page.goto(live.url + "/")
        wait_js(page, "() => document.querySelectorAll('.card .crop').length === 6")
        wait_js(page, "() => [...document.images].every(i => i.complete && i.naturalWidth > 0)")
        crops = page.locator(".card .crop")
        for i in range(6):
            assert crops.nth(i).is_visible()
            box, frame = crops.nth(i).bounding_box(), page.locator(".card .frame").nth(i).bounding_box()
            # Drawn inside its photo and smaller than it (a crop, not the whole frame).
            assert box["x"] >= frame["x"] - 1 and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
            assert box["width"] * box["height"] < frame["width"] * frame["height"]
        assert page.locator(".card .bars .bar").count() == 18  # three element changes per photo
        page.screenshot(path=str(tmp_path / "review.png"))

        cards = page.locator(".card")
        # 1. Accept the first card's crop with a click.
        first_id = int(cards.nth(0).get_attribute("data-id"))
        cards.nth(0).locator("button.accept").click()
        page.wait_for_selector(f'.card[data-id="{first_id}"].accepted')

        # 2. Adjust the second card's crop by dragging its bottom-right handle up and left.
        second = cards.nth(1)
        second_id = int(second.get_attribute("data-id"))
        before = sample.library.photo(second_id).photo.crop.box
        second.hover()
        handle = second.locator(".handle.se").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 30, y - 25, steps=6)
        page.mouse.move(x - 45, y - 35, steps=6)
        page.mouse.up()
        page.wait_for_selector(f'.card[data-id="{second_id}"].adjusted')

        # 3. Reject the third card from the keyboard (focus it, press R).
        third_id = int(cards.nth(2).get_attribute("data-id"))
        cards.nth(2).focus()
        page.keyboard.press("r")
        page.wait_for_selector(f'.card[data-id="{third_id}"].rejected')

        rows = wait_until(lambda: sample.sql(
            "SELECT photo_id, kind, x1, y1, x2, y2, source FROM labels ORDER BY id") if len(
            sample.sql("SELECT id FROM labels")) == 3 else None)
        assert [(r[0], r[1]) for r in rows] == [(first_id, "accept"), (second_id, "box"), (third_id, "reject")]
        assert all(r[6] == "review" for r in rows)
        accepted = sample.library.photo(first_id).photo.crop.box
        assert tuple(rows[0][2:6]) == tuple(accepted)
        x1, y1, x2, y2 = rows[1][2:6]
        # The drag kept the top-left corner and shrank the box.
        assert (x1, y1) == tuple(before[:2]) or abs(x1 - before[0]) <= 2 and abs(y1 - before[1]) <= 2
        assert x2 < before[2] and y2 < before[3] and x2 > x1 and y2 > y1

        # 4. The photo page lists every candidate ranked; prefer #3 over #1 with the keyboard.
        page.goto(f"{live.url}/photo/{first_id}")
        wait_js(page, "() => document.querySelectorAll('.cand').length > 10")
        ranks = [int(v) for v in page.locator(".cand").evaluate_all("els => els.map(e => e.dataset.rank)")]
        assert ranks == list(range(1, len(ranks) + 1))
        assert page.locator("#preview .crop").is_visible()
        page.locator(".cand").nth(2).click()
        page.keyboard.press("p")
        wait_until(lambda: len(sample.sql("SELECT id FROM labels")) == 4)
        kind, rank, other = sample.sql("SELECT kind, rank, other_rank FROM labels ORDER BY id DESC LIMIT 1")[0]
        assert (kind, rank, other) == ("prefer", 3, 1)

        # 5. "Write XMP" writes the selected candidate's set as a sidecar next to the photo.
        name = sample.library.photo(first_id).photo.path
        page.locator("#xmp").click()
        sidecar = wait_until(lambda: next(iter(sample.folder.glob(Path(name).stem + ".xmp")), None))
        assert "CropLeft" in sidecar.read_text()
    assert page.errors == []  # type: ignore[attr-defined]


def test_aspect_switch_redraws_crops_in_that_shape(sample: SampleLibrary, tmp_path: Path,
                                                   browser_page) -> None:  # type: ignore[no-untyped-def]
    page = browser_page
    with LiveServer(create_app(sample.library, thumbnail_dir=tmp_path / "thumbs")) as live:
        page.goto(live.url + "/")
        wait_js(page, "() => document.querySelectorAll('.card .crop').length === 6")
        page.select_option("#aspect", "1:1")
        wait_js(page, "() => document.querySelectorAll('.card .crop[data-aspect=\"1:1\"]').length === 6")
        for i in range(6):
            b = page.locator(".card .crop").nth(i).bounding_box()
            assert abs(b["width"] - b["height"]) <= 2.5  # square on screen
    assert page.errors == []  # type: ignore[attr-defined]
