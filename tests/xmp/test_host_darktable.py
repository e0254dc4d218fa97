"""The real host applies clipcrop's crop: ``clipcrop xmp write`` with default settings, then
Debian's ``darktable-cli`` renders each photo (JPEG, PNG, TIFF, all 8 EXIF orientations), and the
render must be clipcrop's box: its size within 3 px, and its pixels those of the box in the upright
original (compared after normalising brightness, since darktable's default tone curve differs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from support.xmp import TO_STORED, info_for, make_suggestion, transpose

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.xmp import write_crop_metadata

DARKTABLE = shutil.which("darktable-cli")
pytestmark = pytest.mark.skipif(DARKTABLE is None, reason="darktable-cli is not installed (.ci/run installs it)")

UPRIGHT = (300, 200)
SIZE_TOLERANCE = 3
FORMATS = ("jpg", "png", "tif")
# One render per photo takes 1-2 s of darktable start-up; the full matrix runs with the slow tests.
QUICK = {("jpg", 6)}
CASES = [pytest.param(fmt, o, marks=() if (fmt, o) in QUICK else pytest.mark.slow, id=f"{fmt}-{o}")
         for fmt in FORMATS for o in range(1, 9)]


def upright_image() -> Image.Image:
    """No symmetry anywhere (gradients plus seeded blocks), so a flipped or shifted render cannot
    pass for the right one, and a plain subject off centre that a crop beats the full frame for."""
    w, h = UPRIGHT
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w]
    img = np.full((h, w, 3), 60.0)
    img[..., 0] += x * 0.4
    img[..., 1] += y * 0.5
    img += rng.integers(0, 120, (h // 20 + 1, w // 20 + 1, 3)).repeat(20, 0).repeat(20, 1)[:h, :w]
    img[40:110, 170:250] = (250, 230, 40)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def save_oriented(path: Path, upright: Image.Image, orientation: int) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = transpose(upright, TO_STORED[orientation])
    stored.save(path, **({"quality": 95} if path.suffix == ".jpg" else {}), exif=exif.tobytes())
    return path


def normalised(im: Image.Image) -> np.ndarray:
    a = np.asarray(im.convert("L"), dtype=np.float64)
    return (a - a.mean()) / (a.std() + 1e-9)


def agreement(rendered: Image.Image, expected: Image.Image) -> float:
    """Correlation of the two after brightness normalisation (1.0: the same picture)."""
    if expected.size != rendered.size:
        expected = expected.resize(rendered.size, Image.Resampling.BILINEAR)
    return float((normalised(rendered) * normalised(expected)).mean())


@pytest.fixture(scope="module")
def configdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("darktable-config")


def render(photo: Path, out: Path, configdir: Path) -> Image.Image:
    r = subprocess.run([DARKTABLE, str(photo), str(out), "--core", "--library", ":memory:", "--configdir",
                        str(configdir), "--conf", "opencl=FALSE"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.exists(), r.stdout[-2000:] + r.stderr[-2000:]
    with Image.open(out) as im:
        return im.convert("RGB")


@pytest.mark.parametrize(("fmt", "orientation"), CASES)
def test_darktable_applies_the_crop_clipcrop_wrote(tmp_path: Path, configdir: Path, fmt: str,
                                                   orientation: int) -> None:
    upright = upright_image()
    photo = save_oriented(tmp_path / f"IMG_{orientation}.{fmt}", upright, orientation)
    result = CliRunner().invoke(cli, ["xmp", "write", str(photo), "--scorer", "heuristic", "--json"])
    assert result.exit_code == 0, result.stderr
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert Path(line["written"]) == tmp_path / f"IMG_{orientation}.xmp"  # the default: IMG.xmp
    shown = json.loads(CliRunner().invoke(cli, ["xmp", "show", str(photo), "--json"]).stdout)
    x1, y1, x2, y2 = shown["box"]
    assert (x2 - x1, y2 - y1) != UPRIGHT, "the test needs a crop smaller than the frame"

    rendered = render(photo, tmp_path / "out.png", configdir)
    w, h = rendered.size
    assert abs(w - (x2 - x1)) <= SIZE_TOLERANCE and abs(h - (y2 - y1)) <= SIZE_TOLERANCE, (rendered.size, shown["box"])
    expected = upright.crop((x1, y1, x2, y2))
    score = agreement(rendered, expected)
    assert score > 0.9, score
    # ...and not a neighbouring or mirrored piece of the photo: those agree far less
    dx = max(8, (x2 - x1) // 8)
    shifted = (x1 + dx, y1, x2 + dx, y2) if x2 + dx <= UPRIGHT[0] else (x1 - dx, y1, x2 - dx, y2)
    assert agreement(rendered, upright.crop(shifted)) < score - 0.1
    assert agreement(rendered, expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) < 0.5


@pytest.mark.slow
def test_darktable_ignores_crops_in_its_own_sidecar_name(tmp_path: Path, configdir: Path) -> None:
    """Why the default is IMG.xmp: the same crop in IMG.JPG.xmp renders the full frame."""
    photo = save_oriented(tmp_path / "IMG_E.jpg", upright_image(), 1)
    result = CliRunner().invoke(cli, ["xmp", "write", str(photo), "--scorer", "heuristic", "--naming", "ext"])
    assert result.exit_code == 0 and (tmp_path / "IMG_E.jpg.xmp").exists(), result.stderr
    rendered = render(photo, tmp_path / "out.png", configdir)
    assert rendered.size == UPRIGHT


def test_darktable_turns_by_an_xmp_only_orientation_and_crops_in_that_frame(tmp_path: Path, configdir: Path) -> None:
    """A PNG without EXIF whose sidecar keeps the rotation (tiff:Orientation=6): clipcrop keeps the
    value, scores the turned frame, and darktable renders the box of the turned photo."""
    upright = upright_image()
    photo = tmp_path / "TURNED.png"
    transpose(upright, TO_STORED[6]).save(photo)
    (tmp_path / "TURNED.xmp").write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/>'
        "</rdf:RDF></x:xmpmeta>", encoding="utf-8")
    result = CliRunner().invoke(cli, ["xmp", "write", str(photo), "--scorer", "heuristic"])
    assert result.exit_code == 0, result.stderr
    shown = json.loads(CliRunner().invoke(cli, ["xmp", "show", str(photo), "--json"]).stdout)
    assert shown["tiff"]["Orientation"] == "6" and shown["clipcrop"]["UprightWidth"] == str(UPRIGHT[0])
    x1, y1, x2, y2 = shown["box"]
    rendered = render(photo, tmp_path / "out.png", configdir)
    assert abs(rendered.width - (x2 - x1)) <= SIZE_TOLERANCE and abs(rendered.height - (y2 - y1)) <= SIZE_TOLERANCE
    assert agreement(rendered, upright.crop((x1, y1, x2, y2))) > 0.9


def _darktable_lua(photo: Path, out: Path, configdir: Path, library: Path, lua: str = "") -> Image.Image:
    """Render with a persistent library (as the darktable GUI has), optionally running Lua first
    in the same process, through darktable 4.2's real Lua API."""
    extra = ["--luacmd", lua] if lua else []
    r = subprocess.run([DARKTABLE, str(photo), str(out), "--core", "--library", str(library), "--configdir",
                        str(configdir), "--conf", "opencl=FALSE", *extra], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and out.exists(), r.stdout[-2000:] + r.stderr[-2000:]
    with Image.open(out) as im:
        return im.convert("RGB")


@pytest.mark.slow
def test_the_lua_plugins_reset_makes_darktable_apply_a_new_crop(tmp_path: Path) -> None:
    """What examples/darktable/clipcrop.lua relies on, on the real darktable: an image darktable has
    processed once never picks up IMG.xmp again, `is_altered` stays false while its only history is
    darktable's own (including a crop it imported), and `image:reset()` makes the next processing
    apply the crop in IMG.xmp, including a changed one."""
    photo = save_oriented(tmp_path / "LIB.jpg", upright_image(), 6)
    library, configdir, report = tmp_path / "library.db", tmp_path / "config", tmp_path / "lua.txt"
    assert _darktable_lua(photo, tmp_path / "o1.png", configdir, library).size == UPRIGHT  # processed, no crop yet
    assert CliRunner().invoke(cli, ["xmp", "write", str(photo), "--scorer", "heuristic"]).exit_code == 0
    assert _darktable_lua(photo, tmp_path / "o2.png", configdir, library).size == UPRIGHT  # never re-read
    lua = (f'local dt = require "darktable"; local img = dt.database.import({str(photo)!r}); '
           f'local f = io.open({str(report)!r}, "a"); f:write(tostring(img.is_altered), " ", '
           'tostring(pcall(function() return img.apply_sidecar end)), "\\n"); f:close(); '
           'if not img.is_altered then img:reset(); img:drop_cache() end')
    _darktable_lua(photo, tmp_path / "o3.png", configdir, library, lua)
    x1, y1, x2, y2 = json.loads(CliRunner().invoke(cli, ["xmp", "show", str(photo), "--json"]).stdout)["box"]
    applied = _darktable_lua(photo, tmp_path / "o4.png", configdir, library)
    assert abs(applied.width - (x2 - x1)) <= SIZE_TOLERANCE and abs(applied.height - (y2 - y1)) <= SIZE_TOLERANCE
    # clipcrop changes its mind: a reset again, and the next processing takes the new crop
    box = (0, 0, 200, 150)
    write_crop_metadata(photo, make_suggestion(photo, box, info_for(photo)))
    _darktable_lua(photo, tmp_path / "o5.png", configdir, library, lua)
    again = _darktable_lua(photo, tmp_path / "o6.png", configdir, library)
    assert abs(again.width - 200) <= SIZE_TOLERANCE and abs(again.height - 150) <= SIZE_TOLERANCE
    assert report.read_text().split() == ["false", "false", "false", "false"]  # not altered; no apply_sidecar in 4.2
