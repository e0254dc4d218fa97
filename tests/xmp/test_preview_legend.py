"""Previews stay readable with many sets: labels live in a legend band, one swatch per set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image
from support.store import make_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.preview import PALETTE


def test_every_set_has_its_own_colour_in_a_legend_below_the_photo(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "p.jpg", seed=4, size=(480, 320))
    out = tmp_path / "p.preview.jpg"
    aspects = ["1:1", "4:5", "16:9", "9:16"]
    res = CliRunner().invoke(cli, ["suggest", str(photo), "--preview", str(out), "--scorer", "heuristic",
                                   *[a for x in aspects for a in ("--aspect", x)]])
    assert res.exit_code == 0, res.output
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape[1] == 480 and img.shape[0] > 320  # the photo, then the legend band
    band = img[322:]
    for color in PALETTE[: len(aspects) + 1]:  # grid + the four ratio sets
        close = (np.abs(band - np.array(color)).sum(axis=2) < 60).sum()
        assert close >= 100, f"no legend swatch of colour {color}"
