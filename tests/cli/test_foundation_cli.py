"""``clipcrop suggest`` end to end through click: output shapes, previews, exit codes, the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image
from support.photos import save_with_orientation, subject_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.suggest import iter_photo_paths

KEYS = {"path", "ok", "error", "width", "height", "orientation", "scorer", "choice", "subjects", "crops"}
CROP_KEYS = {"aspect", "box", "score", "rank", "improvement", "explanation"}


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    subject_photo(480, 320).save(lib / "a.jpg", "JPEG")
    save_with_orientation(subject_photo(480, 320, center=(0.3, 0.6)), lib / "b.jpg", 6)
    return lib


def run(*args: str) -> object:
    return CliRunner().invoke(cli, ["suggest", *args], catch_exceptions=False)


def test_json_lines_shape(library: Path) -> None:
    res = run(str(library), "--json", "--aspect", "1:1", "--aspect", "16:9", "--top", "2", "--scorer", "heuristic")
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(lines) == 2
    for obj in lines:
        assert set(obj) == KEYS and obj["ok"] is True and obj["error"] is None and obj["scorer"] == "heuristic"
        assert {c["aspect"] for c in obj["crops"]} == {"grid", "1:1", "16:9"}
        assert all(set(sub) == {"kind", "box", "score"} for sub in obj["subjects"])
        assert len(obj["crops"]) == 6
        for crop in obj["crops"]:
            assert set(crop) == CROP_KEYS
            x1, y1, x2, y2 = crop["box"]
            assert all(isinstance(v, int) for v in crop["box"])
            assert 0 <= x1 < x2 <= obj["width"] and 0 <= y1 < y2 <= obj["height"]
            assert crop["rank"] in (1, 2)
            for e in crop["explanation"]:
                assert set(e) == {"element", "change"}
    rotated = next(o for o in lines if o["path"].endswith("b.jpg"))
    assert (rotated["width"], rotated["height"], rotated["orientation"]) == (480, 320, 6)  # upright size


def test_human_output_has_box_score_improvement_and_explanation(library: Path) -> None:
    res = run(str(library / "a.jpg"), "--aspect", "1:1", "--top", "1", "--scorer", "heuristic")
    assert res.exit_code == 0
    text = res.stdout
    assert "box " in text and "score " in text and "vs full frame" in text
    assert ("more " in text or "less " in text) and "1:1" in text and "grid" in text


def test_auto_without_weights_warns_once_and_works(library: Path) -> None:
    res = run(str(library), "--top", "1")
    assert res.exit_code == 0
    assert res.stderr.count("no CLIP weights found") == 1
    # Said once a day, not on every run; -v still shows it.
    res = run(str(library), "--top", "1")
    assert res.exit_code == 0 and "no CLIP weights found" not in res.stderr
    res = CliRunner().invoke(cli, ["-v", "suggest", str(library), "--top", "1"], catch_exceptions=False)
    assert res.exit_code == 0 and "no CLIP weights found" in res.stderr


def test_bad_file_is_reported_and_the_rest_go_on(library: Path) -> None:
    (library / "c.jpg").write_text("definitely not a jpeg")
    res = run(str(library), "--json", "--scorer", "heuristic")
    assert res.exit_code == 1
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["ok"] for o in objs] == [True, True, False]
    assert "not an image" in objs[2]["error"] and objs[2]["crops"] == []
    err = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "c.jpg" in err[0]
    assert "3 photo(s), 2 ok, 1 failed" in res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--aspect", "x:y"], 2, "bad aspect"),
        (["--scorer", "nope"], 2, "unknown scorer"),
        (["--top", "-1"], 2, "--top"),
        (["--no-grid"], 2, "--no-grid"),
    ],
)
def test_usage_errors(library: Path, args: list[str], code: int, message: str) -> None:
    res = run(str(library), *args)
    assert res.exit_code == code
    assert message in res.stderr and "Traceback" not in res.output


def test_nothing_found(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = run(str(tmp_path / "empty"), "--scorer", "heuristic")
    assert res.exit_code == 1 and "no photos found" in res.stderr


def test_missing_path_is_an_error_line(tmp_path: Path) -> None:
    res = run(str(tmp_path / "nope.jpg"), "--scorer", "heuristic")
    assert res.exit_code == 1 and "no such file" in res.stderr and "1 failed" in res.stderr


def test_preview_single_file_and_folder(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.jpg"
    res = run(str(library / "b.jpg"), "--aspect", "1:1", "--preview", str(out), "--scorer", "heuristic")
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        # upright, like the boxes, with the legend band below the photo
        assert im.format == "JPEG" and im.width == 480 and 320 < im.height <= 320 + 2 * 18 + 6
    folder = tmp_path / "previews"
    res = run(str(library), "--preview", str(folder), "--scorer", "heuristic")
    assert res.exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.preview.jpg", "b.preview.jpg"]


def test_preview_never_overwrites_the_photo(library: Path) -> None:
    photo = library / "a.jpg"
    before = photo.read_bytes()
    res = run(str(photo), "--preview", str(photo), "--scorer", "heuristic")
    assert res.exit_code == 1 and "refusing to overwrite" in res.stderr
    assert photo.read_bytes() == before


def test_help_has_an_example() -> None:
    res = CliRunner().invoke(cli, ["suggest", "--help"])
    assert res.exit_code == 0 and "clipcrop suggest" in res.output and "--aspect" in res.output


@pytest.mark.timeout(300)
def test_every_corpus_file_gets_a_suggestion_or_one_line_error(corpus_dir: Path) -> None:
    expected = [str(p) for p in iter_photo_paths([corpus_dir])]
    res = run(str(corpus_dir), "--json", "--aspect", "1:1", "--top", "1", "--scorer", "heuristic")
    assert "Traceback" not in res.output
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert [o["path"] for o in objs] == expected
    failed = [o for o in objs if not o["ok"]]
    for o in objs:
        if o["ok"]:
            assert o["crops"] and o["width"] > 0
        else:
            assert o["error"] and "\n" not in o["error"]
    assert res.exit_code == (1 if failed else 0)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(failed)
