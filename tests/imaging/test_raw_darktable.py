"""darktable end to end: a DNG with EXIF orientation 6 (3 and 8 in the slow suite), ``clipcrop xmp write``,
then ``darktable-cli`` renders the crop: the right size (within 3 px) and the pixels the box names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from support.raw import correlation, make_dng

from clipcrop_plugin.cli.main import cli

pytest.importorskip("rawpy", reason="the [raw] extra (rawpy) decodes camera RAW")
DARKTABLE = shutil.which("darktable-cli")
pytestmark = pytest.mark.skipif(DARKTABLE is None, reason="darktable-cli is not installed (Debian package darktable)")


def _render(photo: Path, out: Path, configdir: Path) -> Image.Image:
    run = subprocess.run([DARKTABLE, str(photo), str(out), "--core", "--library", ":memory:",
                          "--configdir", str(configdir)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and out.exists(), run.stdout + run.stderr
    with Image.open(out) as im:
        return im.convert("RGB")


@pytest.mark.parametrize("orientation, preview", [
    (6, (624, 418)),
    pytest.param(8, None, marks=pytest.mark.slow),  # the demosaic path, the other quarter turn
    pytest.param(3, (624, 418), marks=pytest.mark.slow),
])
def test_darktable_renders_the_crop_clipcrop_wrote_for_a_rotated_dng(tmp_path: Path, orientation: int,
                                                                     preview: tuple[int, int] | None) -> None:
    # Masked sensor margins (ActiveArea): the crs fractions must refer to the stored frame LibRaw
    # and darktable both see, 1248x836 here, not to the 1280x852 sensor.
    kw = {"preview": preview, "margins": (16, 8)}
    shot = make_dng(tmp_path / "shoot" / "IMG_0006.dng", orientation, **kw)
    reference = make_dng(tmp_path / "plain" / "IMG_0006.dng", orientation, **kw)  # the same file, no sidecar
    upright_size = (836, 1248) if orientation in (6, 8) else (1248, 836)

    # The default naming: darktable applies crs crops from IMG_0006.xmp (its Lightroom import) and
    # treats IMG_0006.dng.xmp as its own history file, where it ignores them.
    result = CliRunner().invoke(cli, ["xmp", "write", str(shot), "--scorer", "heuristic", "--json"])
    assert result.exit_code == 0, result.output
    sidecar = shot.with_suffix(".xmp")
    assert sidecar.is_file()
    from clipcrop_plugin.xmp.packet import parse_packet, read_crop

    data = read_crop(parse_packet(sidecar.read_bytes()))
    box = [int(v) for v in data["clipcrop"]["Box"].split(",")]
    assert (data["clipcrop"]["UprightWidth"], data["clipcrop"]["UprightHeight"]) == tuple(str(v) for v in upright_size)

    full = _render(reference, tmp_path / "full.jpg", tmp_path / "dt-full")
    # darktable's upright frame is clipcrop's (it may drop a demosaic border pixel: 1247x835 at 180 degrees)
    assert abs(full.width - upright_size[0]) <= 1 and abs(full.height - upright_size[1]) <= 1, full.size
    cropped = _render(shot, tmp_path / "crop.jpg", tmp_path / "dt-crop")
    x1, y1, x2, y2 = box
    assert abs(cropped.width - (x2 - x1)) <= 3 and abs(cropped.height - (y2 - y1)) <= 3, (cropped.size, box)
    # darktable's cropped render is the box of its own uncropped render, and not a box next to it.
    dx, dy = max(8, (x2 - x1) // 20), max(8, (y2 - y1) // 20)
    scores = {}
    for ox in (-dx, 0, dx):
        for oy in (-dy, 0, dy):
            moved = (x1 + ox, y1 + oy, x2 + ox, y2 + oy)
            if moved[0] >= 0 and moved[1] >= 0 and moved[2] <= full.width and moved[3] <= full.height:
                scores[(ox, oy)] = correlation(cropped, full.crop(moved), size=(64, 96))
    assert scores[(0, 0)] > 0.9 and max(scores, key=scores.get) == (0, 0), scores
