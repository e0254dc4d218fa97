"""The official dataset layouts as published: CADB_Dataset/ (real excerpt), AADB's VividColor,
FCDB training (preference pairs) and evaluation, and the one-command recipe.

Real annotation samples are read from ../shared/datasets/ (never copied into the repo); the tests
that need them skip with the reason when that folder is absent. Images are made by the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support import ROOT

from clipcrop_plugin.model import read_checkpoint_info
from clipcrop_plugin.model.testing import write_clip_weights
from trainer import modeling, synthetic
from trainer.cli import cli
from trainer.data import DataError, read_aadb, read_cadb, read_fcdb, read_fcdb_pairs
from trainer.stages import StageSettings, run_stage

SHARED = ROOT.parent / "shared" / "datasets"


def _shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.is_file():
        pytest.skip(f"real annotation sample {path} not found (../shared/datasets is absent)")
    return path


@pytest.fixture()
def cadb_elements() -> dict[str, dict[str, list]]:
    return json.loads(_shared("cadb/composition_elements.excerpt.json").read_text())


@pytest.fixture()
def cadb_folder(tmp_path: Path, cadb_elements: dict[str, dict[str, list]]) -> Path:
    scores = json.loads(_shared("cadb/composition_scores.excerpt.json").read_text())
    return synthetic.write_cadb_official(tmp_path / "CADB_Dataset", cadb_elements, scores, test=2)


def test_cadb_official_folder_classes_are_keys(cadb_folder: Path, cadb_elements: dict[str, dict[str, list]]) -> None:
    train = read_cadb(cadb_folder, "train")
    test = read_cadb(cadb_folder, "test")
    assert len(train) == 8 and len(test) == 2
    by_name = {r.name: r.labels.tolist() for r in train.records + test.records}
    # 9862.jpg: vertical, rule_of_thirds, horizontal; 9917.jpg: center, curved, horizontal;
    # 9955.jpg: golden_ratio only (not a class of the composition branch)
    assert by_name["9862"] == [0, 1, 1, 1, 0]
    assert by_name["9917"] == [1, 0, 1, 0, 1]
    assert by_name["9955"] == [0, 0, 0, 0, 0]
    assert set(by_name) == {Path(n).stem for n in cadb_elements}
    # the elements file itself may be given too
    assert len(read_cadb(cadb_folder / "composition_elements.json", "train")) == 8


def test_cadb_errors_point_at_the_json_key(cadb_folder: Path) -> None:
    f = cadb_folder / "composition_elements.json"
    data = json.loads(f.read_text())
    data["9863.jpg"] = ["center"]
    f.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"composition_elements.json \['9863.jpg'\]: expected an object \{class"):
        read_cadb(cadb_folder, "train")
    del data["9863.jpg"]
    f.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"split.json lists '9863.jpg' but .*composition_elements.json has no entry"):
        read_cadb(cadb_folder, "train")
    with pytest.raises(DataError, match=r"split.json: no 'val' list"):
        read_cadb(cadb_folder, "val")
    (cadb_folder / "composition_elements.json").write_text('{"a": 1,,}')
    with pytest.raises(DataError, match=r"composition_elements.json:1: invalid JSON"):
        read_cadb(cadb_folder, "train")
    plain = cadb_folder / "labels.json"
    plain.write_text(json.dumps({"9862.jpg": {"vertical": []}}))
    with pytest.raises(DataError, match="composition_elements.json form"):
        read_cadb(plain)


def test_stage1_runs_on_the_official_cadb_layout(cadb_folder: Path, tmp_path: Path) -> None:
    s = StageSettings(stage="composition", data=cadb_folder, out=tmp_path / "s1", model_config=modeling.tiny_config(64),
                      lr=1e-3, epochs=1, batch_size=4, device="cpu", random_init=True)
    result = run_stage(s, progress=False)
    info = read_checkpoint_info(result.checkpoint)
    assert info.provenance["data"].endswith("[train] / val [test]")  # split.json's test split held out
    assert info.lineage == ["composition"] and info.trunk == "random" and info.provenance["random_trunk"] is True
    assert not info.can_score and "never trained" in (info.to_dict()["why_not"] or "")
    assert np.isfinite(result.metrics["loss"]) and 0.0 <= result.metrics["val_top1"] <= 1.0


def test_aadb_color_is_vividcolor_not_colorharmony(tmp_path: Path) -> None:
    folder = synthetic.write_aadb(tmp_path / "AADB" / "imgListFiles_label", n=4)
    # ColorHarmony is also in the official folder; it must not be read as the "color" element.
    names = [ln.split()[0] for ln in (folder / "imgListTrainRegression_VividColor.txt").read_text().splitlines()]
    (folder / "imgListTrainRegression_ColorHarmony.txt").write_text("".join(f"{n} -0.9\n" for n in names))
    (folder / "imgListTrainRegression_VividColor.txt").write_text("".join(f"{n} 0.8\n" for n in names))
    ds = read_aadb(tmp_path / "AADB", "train")  # the AADB root works as well as its label folder
    assert [r.labels[0] for r in ds.records] == [0.8] * 4
    (folder / "imgListTrainRegression_VividColor.txt").unlink()
    with pytest.raises(DataError, match="missing AADB label file .*VividColor.txt"):
        read_aadb(folder, "train")
    with pytest.raises(DataError, match="Validation"):
        read_aadb(folder, "val")


def test_fcdb_official_test_split_is_read_whole() -> None:
    records = read_fcdb(_shared("fcdb/cropping_testing_set.json").parent, "test", require_images=False)
    assert len(records) == 345
    assert all(r.box[2] > r.box[0] and r.box[3] > r.box[1] for r in records)
    assert records[0].name == "6931423716_4fb31feac6_c"
    np.testing.assert_array_equal(records[0].box, [3, 130, 3 + 797, 130 + 279])


def test_fcdb_ranking_errors_name_the_key(tmp_path: Path) -> None:
    root = synthetic.write_fcdb_training(tmp_path / "FCDB", n=3)
    rank = json.loads((root / "ranking_annotation.json").read_text())
    del rank[1]["crops"][2]["vote_for_1"]
    (root / "ranking_annotation.json").write_text(json.dumps(rank))
    with pytest.raises(DataError, match=r"ranking_annotation.json entry 1 \[\"crops\"\]\[2\]: expected"):
        read_fcdb_pairs(root, "train")
    rank[1]["crops"][2]["vote_for_1"] = 1
    rank[0]["crops"][0]["crop_1"] = [1, 2, 0, 5]
    (root / "ranking_annotation.json").write_text(json.dumps(rank))
    with pytest.raises(DataError, match=r"entry 0 \[\"crops\"\]\[0\]\[\"crop_1\"\]: crop has non-positive size"):
        read_fcdb_pairs(root, "train")


@pytest.mark.slow
def test_fcdb_training_and_evaluation(tmp_path: Path) -> None:
    """Stage 3 learns FCDB's preference pairs; `evaluate --dataset fcdb` prints the caveat beside the paper."""
    root = synthetic.write_fcdb_training(tmp_path / "FCDB", n=24, seed=1)
    synthetic.write_fcdb(root, n=6, seed=2)  # the test split, same folder as published
    records = read_fcdb_pairs(root, "train")
    assert len(records) == 24 and all(r.ranked and len(r.pairs) >= 10 for r in records)
    assert (records[0].pairs[:, 0] == 0).sum() == len(records[0]) - 1  # the best crop over every ranked crop
    s = StageSettings(stage="cropping", data=root, out=tmp_path / "s3", model_config=modeling.tiny_config(128),
                      lr=2e-3, epochs=4, batch_size=4, device="cpu", seed=0, random_init=True, val_fraction=0.25)
    result = run_stage(s, progress=False)
    accs = [h["val_pair_acc"] for h in result.history]
    assert accs[-1] > 0.7, accs
    res = CliRunner().invoke(cli, ["evaluate", "--dataset", "fcdb", "--root", str(root), "--checkpoint",
                                   str(result.checkpoint), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "FCDB (paper)" in res.output and "caveat: not the paper's protocol: 6 test images, the paper used 348" in res.output
    res = CliRunner().invoke(cli, ["evaluate", "--dataset", "fcdb", "--root", str(root), "--checkpoint",
                                   str(result.checkpoint), "--device", "cpu", "--json"])
    out = json.loads(res.output)
    assert 0.0 < out["iou"] <= 1.0 and out["images"] == 6 and out["caveats"]


def _data_root(tmp_path: Path, elements: dict[str, dict[str, list]]) -> Path:
    root = tmp_path / "datasets"
    synthetic.write_cadb_official(root / "CADB_Dataset", elements, test=2)
    synthetic.write_aadb(root / "AADB" / "imgListFiles_label", n=10)
    synthetic.write_gaicd(root / "GAICD", n_train=6, n_test=2)
    synthetic.write_fcdb(root / "FCDB", n=3)
    return root


@pytest.mark.slow
def test_recipe_runs_every_step_and_resumes(tmp_path: Path, cadb_elements: dict[str, dict[str, list]]) -> None:
    root = _data_root(tmp_path, cadb_elements)
    cfg = modeling.tiny_config(64)
    (tmp_path / "tiny.json").write_text(json.dumps(cfg.to_dict()))
    weights = write_clip_weights(tmp_path / "tiny-clip.safetensors", cfg)  # stands in for the pretrained file
    model_dir = tmp_path / "models"
    ann = sorted((root / "GAICD" / "annotations" / "train").glob("*.txt"))[0]
    good = ann.read_text()
    ann.write_text(good + "1 2 oops 4 3.0\n")  # stage 3 fails after stages 1 and 2 are done
    args = ["recipe", "--data-root", str(root), "--out", str(tmp_path / "run"), "--model-config", str(tmp_path / "tiny.json"),
            "--clip-weights", str(weights), "--epochs", "1,1,1", "--batch-size", "4,4,2", "--lr", "1e-3,1e-3,1e-3",
            "--device", "cpu"]
    env = {"CLIPCROP_MODEL_DIR": str(model_dir)}
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 1 and f"{ann.name}:{len(good.splitlines()) + 1}: malformed GAICD line" in res.output
    ann.write_text(good)
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0, res.output
    assert res.output.count("done earlier") == 2  # stages 1 and 2 were not run again
    state = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert {"composition", "aesthetic", "cropping", "evaluate-gaicd", "evaluate-fcdb", "import"} <= set(state["steps"])
    s3 = read_checkpoint_info(state["steps"]["cropping"]["checkpoint"])
    assert s3.lineage == ["composition", "aesthetic", "cropping"] and s3.trunk == "pretrained" and s3.can_score
    assert state["steps"]["import"]["activated"] and (model_dir / "checkpoints" / "ACTIVE").read_text().strip() == \
        Path(state["steps"]["cropping"]["checkpoint"]).name
    assert state["steps"]["evaluate-fcdb"]["metrics"]["caveats"]
    mtime = Path(state["steps"]["composition"]["checkpoint"]).stat().st_mtime_ns
    res = CliRunner().invoke(cli, args, env=env)
    assert res.exit_code == 0 and res.output.count("done earlier") == 5, res.output
    assert Path(state["steps"]["composition"]["checkpoint"]).stat().st_mtime_ns == mtime
