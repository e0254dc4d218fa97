"""Readers on small files in the official formats, their error messages, and evaluate --predictions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from trainer import synthetic
from trainer.cli import cli
from trainer.data import DataError, read_aadb, read_cadb, read_crops_csv, read_fcdb, read_gaicd


def _img(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


def _gaicd(root: Path, lines: str, name: str = "211965", split: str = "test") -> Path:
    _img(root / "images" / split / f"{name}.jpg")
    ann = root / "annotations" / split / f"{name}.txt"
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(lines, encoding="utf-8")
    return ann


def test_gaicd_official_lines_are_row_first_and_keep_invalid_crops(tmp_path: Path) -> None:
    _gaicd(tmp_path, "24 43 408 811 3.71\n0 0 10 20 -2\n\n5 6 25 36 2.50\n")
    (rec,) = read_gaicd(tmp_path, "test")
    assert rec.name == "211965" and rec.image_path and rec.image_path.name == "211965.jpg"
    np.testing.assert_array_equal(rec.boxes[0], [43, 24, 811, 408])  # x1 y1 x2 y2
    np.testing.assert_array_equal(rec.mos, [3.71, -2.0, 2.50])
    np.testing.assert_array_equal(rec.valid, [True, False, True])


def test_gaicd_errors_name_the_file_and_line(tmp_path: Path) -> None:
    ann = _gaicd(tmp_path, "24 43 408 811 3.71\n24 43 408 oops 3.1\n")
    with pytest.raises(DataError, match=rf"{ann.name}:2: malformed GAICD line"):
        read_gaicd(tmp_path, "test")
    ann.write_text("24 43 408 811\n")
    with pytest.raises(DataError, match=r":1: .*expected 5 numbers"):
        read_gaicd(tmp_path, "test")


def test_gaicd_missing_image_and_empty_split(tmp_path: Path) -> None:
    _gaicd(tmp_path, "24 43 408 811 3.71\n")
    (tmp_path / "images" / "test" / "211965.jpg").unlink()
    with pytest.raises(DataError, match="missing image for .*211965"):
        read_gaicd(tmp_path, "test")
    assert len(read_gaicd(tmp_path, "test", require_images=False)) == 1  # predictions mode needs none
    (tmp_path / "annotations" / "train").mkdir()
    with pytest.raises(DataError, match="empty split"):
        read_gaicd(tmp_path, "train")
    with pytest.raises(DataError, match="no GAICD annotations folder"):
        read_gaicd(tmp_path, "val")


def test_crop_csv_form(tmp_path: Path) -> None:
    _img(tmp_path / "a.jpg")
    (tmp_path / "crops.csv").write_text("image,x1,y1,x2,y2,score\na.jpg,0,0,30,20,3.5\na.jpg,5,5,40,30,-2\n")
    (rec,) = read_crops_csv(tmp_path / "crops.csv")
    np.testing.assert_array_equal(rec.boxes[0], [0, 0, 30, 20])
    np.testing.assert_array_equal(rec.valid, [True, False])
    (tmp_path / "bad.csv").write_text("image,x1,y1,x2,y2,score\na.jpg,0,0,30,20,3.5\na.jpg,5,5,x,30,1\n")
    with pytest.raises(DataError, match=r"bad.csv:3: malformed crop row"):
        read_crops_csv(tmp_path / "bad.csv")
    (tmp_path / "nohdr.csv").write_text("image,x,y\n")
    with pytest.raises(DataError, match="header lacks column"):
        read_crops_csv(tmp_path / "nohdr.csv")


def test_fcdb_official_json_and_bcmi_forms(tmp_path: Path) -> None:
    _img(tmp_path / "images" / "123_abc.jpg")
    (tmp_path / "cropping_testing_set.json").write_text(json.dumps(
        [{"url": "http://farm1.staticflickr.com/1/123_abc.jpg", "flickr_photo_id": 123, "crop": [2, 3, 20, 10]}]))
    (rec,) = read_fcdb(tmp_path, "test")
    np.testing.assert_array_equal(rec.box, [2, 3, 22, 13])
    other = tmp_path / "bcmi"
    _img(other / "images" / "x.jpg")
    (other / "image_crop.json").write_text(json.dumps({"x.jpg": [1, 1, 10, 10], "y.jpg": [0, 0, 5, 5]}))
    (other / "data_split.json").write_text(json.dumps({"train": ["y.jpg"], "test": ["x.jpg"]}))
    assert [r.name for r in read_fcdb(other, "test")] == ["x"]
    with pytest.raises(DataError, match="missing image y.jpg"):
        read_fcdb(other, "train")
    (other / "image_crop.json").write_text(json.dumps({"x.jpg": [1, 1, 0, 10]}))
    with pytest.raises(DataError, match="non-positive size"):
        read_fcdb(other, "test")


def test_cadb_json_and_csv(tmp_path: Path) -> None:
    labels = synthetic.write_cadb(tmp_path / "c", n=6)
    ds = read_cadb(labels)
    assert len(ds) == 6 and ds.branch == "composition"
    assert all(r.positives.any() for r in ds.records)
    (tmp_path / "c" / "own.json").write_text(json.dumps({"cadb_0000.jpg": ["Rule of Thirds", "RoT", "diagonal"]}))
    (rec,) = read_cadb(tmp_path / "c" / "own.json").records
    np.testing.assert_array_equal(rec.labels, [0, 1, 0, 0, 0])  # unknown labels are ignored
    csv_path = synthetic.write_cadb(tmp_path / "c2", n=5, csv_form=True)
    assert len(read_cadb(csv_path)) == 5
    csv_path.write_text(csv_path.read_text().replace(",0,", ",2,", 1))
    with pytest.raises(DataError, match=r"composition.csv:\d+: composition labels must be 0 or 1"):
        read_cadb(csv_path)
    (tmp_path / "c" / "gone.json").write_text(json.dumps({"nothere.jpg": ["center"]}))
    with pytest.raises(DataError, match="missing image nothere.jpg"):
        read_cadb(tmp_path / "c" / "gone.json")


def test_aadb_label_folder_and_csv(tmp_path: Path) -> None:
    folder = synthetic.write_aadb(tmp_path / "a", n=5)
    ds = read_aadb(folder, "train")
    assert len(ds) == 5 and ds.records[0].labels.shape == (5,)
    assert (np.abs(np.stack([r.labels for r in ds.records])) <= 1).all()
    _img(tmp_path / "b" / "p.jpg")
    (tmp_path / "b" / "attrs.csv").write_text("image,VividColor,Light,DoF,Object,Content\np.jpg,0.5,-0.2,0,0.1,-1\n")
    (rec,) = read_aadb(tmp_path / "b" / "attrs.csv").records
    np.testing.assert_array_equal(rec.positives, [True, False, False, True, False])
    f = folder / "imgListTrainRegression_Light.txt"
    f.write_text(f.read_text() + "aadb_0000.jpg 1.7\n")
    with pytest.raises(DataError, match=r"Light.txt:6: malformed AADB line .*outside"):
        read_aadb(folder, "train")
    with pytest.raises(DataError, match="missing AADB label file"):
        read_aadb(folder, "test")


def test_evaluate_predictions_needs_only_annotations(tmp_path: Path) -> None:
    root = synthetic.write_gaicd(tmp_path / "g", n_train=0, n_test=4)
    shutil.rmtree(root / "images")
    records = read_gaicd(root, "test", require_images=False)
    perfect = {r.name + ".jpg": [float(m) for m in r.mos] for r in records}
    (tmp_path / "p.json").write_text(json.dumps(perfect))
    runner = CliRunner()
    res = runner.invoke(cli, ["evaluate", "--dataset", "gaicd", "--root", str(root), "--predictions",
                              str(tmp_path / "p.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    expected = {f"{p}acc{k}_{n}" for p in ("", "w") for k in (1, 2, 3, 4) for n in (5, 10)}
    assert expected | {"acc5", "acc10", "wacc5", "wacc10", "srcc", "plcc"} <= set(out)
    assert out["acc1_5"] == 100.0 and out["srcc"] == pytest.approx(1.0)
    table = runner.invoke(cli, ["evaluate", "--dataset", "gaicd", "--root", str(root), "--predictions",
                                str(tmp_path / "p.json")])
    assert table.exit_code == 0 and "Acc1/5" in table.output and "70.0" in table.output and "0.910" in table.output
    # A short score list is one clear line, not a traceback.
    first = records[0].name
    perfect[first + ".jpg"] = perfect[first + ".jpg"][:-1]
    (tmp_path / "p.json").write_text(json.dumps(perfect))
    bad = runner.invoke(cli, ["evaluate", "--dataset", "gaicd", "--root", str(root), "--predictions",
                              str(tmp_path / "p.json")])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "255 scores but" in bad.output
    both = runner.invoke(cli, ["evaluate", "--dataset", "gaicd", "--root", str(root)])
    assert both.exit_code == 2 and "exactly one of" in both.output


def test_evaluate_fcdb_predictions(tmp_path: Path) -> None:
    root = synthetic.write_fcdb(tmp_path / "f", n=3)
    gts = {r.name: list(r.box) for r in read_fcdb(root)}
    preds = {name: {"box": box, "width": 160, "height": 120} for name, box in gts.items()}
    (tmp_path / "p.json").write_text(json.dumps(preds))
    res = CliRunner().invoke(cli, ["evaluate", "--dataset", "fcdb", "--root", str(root), "--predictions",
                                   str(tmp_path / "p.json"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["iou"] == pytest.approx(1.0) and out["disp"] == pytest.approx(0.0)
    boxes_only = {name: [b[0] + 8, b[1], b[2] + 8, b[3]] for name, b in gts.items()}  # sizes read from images
    (tmp_path / "q.json").write_text(json.dumps(boxes_only))
    res = CliRunner().invoke(cli, ["evaluate", "--dataset", "fcdb", "--root", str(root), "--predictions",
                                   str(tmp_path / "q.json")])
    assert res.exit_code == 0 and "IoU" in res.output and "0.764" in res.output
