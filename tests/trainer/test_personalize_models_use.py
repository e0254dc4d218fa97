"""`clipcrop models use` and `models import` switch the model folder's pin AND the database's
active version, so `clipcrop models`, the API, the review page and the daemon agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from support.personalize import review, scored_library, tight_left

from clipcrop_plugin.api import Library
from clipcrop_plugin.cli.main import cli as clipcrop
from clipcrop_plugin.config import load_settings
from clipcrop_plugin.model import build_model, save_checkpoint
from clipcrop_plugin.model.checkpoints import active_name
from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
from clipcrop_plugin.model.weights import load_state_file
from clipcrop_plugin.scoring import learned
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.store import Store
from trainer.personalize import PersonalizeSettings, personalize


def _active(db: str) -> tuple[str | None, list[bool]]:
    with Store.open(db) as store:
        act = store.active_model_version()
        return (act.name if act else None), [v.active for v in store.model_versions()]


def test_models_use_moves_the_database_flag_with_the_pin(tmp_path: Path) -> None:
    db, subjects = scored_library(tmp_path, 30, HeuristicScorer(), seed=4)
    with Library.open(db, scorer="heuristic") as lib:
        review(lib, subjects, tight_left, 36)
        res = personalize(PersonalizeSettings(scorer="heuristic", activate=True), progress=False, store=lib.store)
    assert res.activated, res.summary()
    name, flags = _active(db)
    assert name == res.checkpoint.stem and sum(flags) == 1
    model_dir = load_settings().resolved_model_dir()

    runner = CliRunner()
    back = runner.invoke(clipcrop, ["models", "use", "heuristic", "--db", db])
    assert back.exit_code == 0, back.output
    assert learned.active_version(model_dir, "heuristic") is None
    name, flags = _active(db)
    assert name == "heuristic-built-in" and sum(flags) == 1  # the built-in weights are what is in use now

    fwd = runner.invoke(clipcrop, ["models", "use", res.checkpoint.stem, "--db", db])
    assert fwd.exit_code == 0, fwd.output
    assert learned.active_version(model_dir, "heuristic").sha256 == res.sha256  # type: ignore[union-attr]
    name, flags = _active(db)
    assert name == res.checkpoint.stem and sum(flags) == 1
    with Store.open(db) as store:
        assert store.active_model_version().id == res.version_id  # the same row, not a second one
    listing = runner.invoke(clipcrop, ["models"])
    assert f"* {res.checkpoint.stem}" in listing.output

    # An unknown name changes neither place.
    bad = runner.invoke(clipcrop, ["models", "use", "nope", "--db", db])
    assert bad.exit_code == 1 and bad.output.startswith("error: ")
    assert _active(db)[0] == res.checkpoint.stem


def test_import_and_use_of_checkpoints_follow_in_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "models"
    monkeypatch.setenv("CLIPCROP_MODEL_DIR", str(model_dir))
    cfg = tiny_config()
    trained = {"stage": "cropping", "lineage": ["composition", "aesthetic", "cropping"], "trunk": "pretrained"}
    files = []
    for seed, name in enumerate(("first", "second")):
        clip = write_clip_weights(tmp_path / f"{name}-clip.safetensors", cfg, seed=seed)
        model = build_model(cfg, load_state_file(clip))
        files.append(save_checkpoint(model, tmp_path / "export" / name, provenance=dict(trained)).path)
    db = str(tmp_path / "lib.sqlite3")
    runner = CliRunner()
    assert runner.invoke(clipcrop, ["db", "upgrade", "--db", db]).exit_code == 0
    out = runner.invoke(clipcrop, ["models", "import", str(files[0]), "--db", db])
    assert out.exit_code == 0 and "now uses first" in out.output, out.output
    assert active_name(model_dir) == "first.safetensors" and _active(db)[0] == "first"
    out = runner.invoke(clipcrop, ["models", "import", str(files[1]), "--db", db])
    assert out.exit_code == 0 and "models use second" in out.output  # imported, not switched to
    assert _active(db)[0] == "first"
    out = runner.invoke(clipcrop, ["models", "use", "second", "--db", db])
    assert out.exit_code == 0, out.output
    assert active_name(model_dir) == "second.safetensors"
    name, flags = _active(db)
    assert name == "second" and flags.count(True) == 1
