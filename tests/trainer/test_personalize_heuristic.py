"""Personalizing the weights-free scorer on a real SQLite library, end to end through the CLIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support.personalize import loose_centre, review, scored_library, tight_left

from clipcrop_plugin.api import Library
from clipcrop_plugin.cli.main import cli as clipcrop
from clipcrop_plugin.config import load_settings
from clipcrop_plugin.scoring import learned
from clipcrop_plugin.scoring.heuristic import HeuristicScorer
from clipcrop_plugin.store import QueryFilters, Store
from trainer.cli import cli as train_cli
from trainer.personalize import MIN_LABELS, PersonalizeSettings, personalize, split_photos


@pytest.fixture()
def library(tmp_path: Path) -> tuple[str, dict]:
    return scored_library(tmp_path, 36, HeuristicScorer(), seed=0)


def test_learns_the_owners_taste_registers_lineage_and_activates(library: tuple[str, dict]) -> None:
    db, subjects = library
    with Library.open(db, scorer="heuristic") as lib:
        n = review(lib, subjects, tight_left, 40)
        assert n == 40
        res = personalize(PersonalizeSettings(scorer="heuristic", activate=True), progress=False, store=lib.store)
        assert res.scorer == "heuristic" and res.activated and not res.refused
        # The built-in heuristic does not prefer tight, left-third crops; the personal one does.
        assert res.agreement_after >= 0.8 and res.agreement_after > res.agreement_before + 0.15, res.summary()
        versions = {v.id: v for v in lib.store.model_versions()}
        new = versions[res.version_id]
        assert new.active and new.data_summary["scorer"] == "heuristic"
        assert new.data_summary["label_ids"] == sorted(lab.id for lab in lib.labels())
        assert new.metrics["heldout_agreement_after"] == pytest.approx(res.agreement_after)
        parent = versions[new.parent_id]
        assert parent.name == "heuristic-built-in" and parent.sha256 == res.parent_sha256
    pw = learned.read_version(res.checkpoint)
    assert pw.parent_sha256 == res.parent_sha256 and pw.provenance["data"]["rule"] == "iou"
    # The heuristic loads the active version, and its runs are kept apart by the new hash.
    scorer = HeuristicScorer.create(load_settings())
    assert scorer.personal is not None and scorer.weights_hash == res.sha256
    assert HeuristicScorer().weights_hash is None


def test_rescore_applies_the_new_version_and_switching_back_restores_old_runs(library: tuple[str, dict]) -> None:
    db, subjects = library
    with Library.open(db, scorer="heuristic") as lib:
        review(lib, subjects, tight_left, 40)
        res = personalize(PersonalizeSettings(scorer="heuristic", activate=True), progress=False, store=lib.store)
    assert res.activated
    runner = CliRunner()
    out = runner.invoke(clipcrop, ["scan", "--rescore", "--scorer", "heuristic", "--db", db])
    assert out.exit_code == 0, out.output
    assert "36 scored" in out.output
    with Store.open(db) as store:
        new = store.query(QueryFilters(scorer="heuristic", weights_hash=res.sha256), limit=None)
        old = store.query(QueryFilters(scorer="heuristic", weights_hash=""), limit=None)
        assert len(new) == len(old) == 36  # the previous suggestions stay queryable by version
        active = store.query(QueryFilters(), limit=None)
        assert {store.active_scorer(p.id) for p in active} == {("heuristic", res.sha256)}
        # The owner's taste moved the suggestions.
        moved = sum(a.crop.box != b.crop.box for a, b in zip(sorted(new, key=lambda p: p.id),
                                                                sorted(old, key=lambda p: p.id)))
        assert moved >= 10
    back = runner.invoke(clipcrop, ["models", "use", "heuristic"])
    assert back.exit_code == 0 and "built-in weights" in back.output
    again = runner.invoke(clipcrop, ["scan", "--rescore", "--scorer", "heuristic", "--db", db])
    assert again.exit_code == 0 and "0 scored, 36 unchanged" in again.output, again.output
    with Store.open(db) as store:
        assert {store.active_scorer(p.id) for p in store.query(QueryFilters(), limit=None)} == {("heuristic", None)}
    fwd = runner.invoke(clipcrop, ["models", "use", res.checkpoint.stem])
    assert fwd.exit_code == 0 and res.checkpoint.stem in fwd.output
    listing = runner.invoke(clipcrop, ["models"])
    assert f"* {res.checkpoint.stem}" in listing.output


def test_a_version_that_loses_held_out_agreement_is_never_activated(library: tuple[str, dict]) -> None:
    db, subjects = library
    paths = sorted(subjects)
    held = split_photos(paths, 0.25, 0)
    with Library.open(db, scorer="heuristic") as lib:
        # Every photo gets labels (so personalize holds out exactly ``held``): the training photos
        # say "tight, left third", the held-out ones the opposite.
        review(lib, subjects, tight_left, 200, only=set(paths) - held)
        review(lib, subjects, loose_centre, 200, only=held)
        assert {lab.path for lab in lib.labels()} == set(paths)
        res = personalize(PersonalizeSettings(scorer="heuristic", activate=True), progress=False, store=lib.store)
        assert res.agreement_after < res.agreement_before, res.summary()
        assert not res.activated and "fell" in res.refused
        assert "not activated" in res.summary()
        assert not next(v for v in lib.store.model_versions() if v.id == res.version_id).active
    assert learned.active_version(load_settings().resolved_model_dir(), "heuristic") is None
    assert res.checkpoint.is_file()  # kept: `clipcrop models use` can still pick it


def test_too_few_labels_is_a_clear_message_with_the_count(library: tuple[str, dict]) -> None:
    db, subjects = library
    with Library.open(db, scorer="heuristic") as lib:
        n = review(lib, subjects, tight_left, 5)
    res = CliRunner().invoke(train_cli, ["personalize", "--scorer", "heuristic", "--db", db])
    assert res.exit_code == 1
    assert res.output.startswith(f"error: personalization needs at least {MIN_LABELS} labels and the database has {n} usable")
    assert f"label {MIN_LABELS - n} more" in res.output


def test_check_says_how_many_labels_and_which_photos_to_label_next(library: tuple[str, dict]) -> None:
    db, subjects = library
    with Library.open(db, scorer="heuristic") as lib:
        review(lib, subjects, tight_left, 12)
        expected = [p.path for p in lib.photos(sort="uncertain", status="scored", labelled=False, limit=10).items]
    res = CliRunner().invoke(train_cli, ["personalize", "--check", "--scorer", "heuristic", "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)
    assert st["usable"] == 12 and st["minimum"] == MIN_LABELS and st["most_uncertain"] == expected
    text = CliRunner().invoke(train_cli, ["personalize", "--check", "--scorer", "heuristic", "--db", db]).output
    assert text.startswith("12 usable labels on ") and f"label {MIN_LABELS - 12} more" in text
    assert expected[0] in text


def test_most_uncertain_sort_puts_the_smallest_lead_first(library: tuple[str, dict]) -> None:
    db, _ = library
    with Store.open(db) as store:
        page = store.query(QueryFilters(status="scored"), sort="uncertain", limit=None)
        assert len(page) == 36
        leads = []
        for ph in page:
            d = store.photo_detail(ph.id)
            same = sorted((c for c in d.candidates if c.aspect == ph.crop.aspect), key=lambda c: c.rank)
            leads.append(same[0].score - same[1].score)
        assert leads == sorted(leads) and leads[0] < leads[-1]
    from fastapi.testclient import TestClient

    from clipcrop_plugin.server.app import create_app

    with Library.open(db, scorer="heuristic") as lib:
        client = TestClient(create_app(lib, thumbnail_dir=Path(db[10:]).parent / "thumbs"), base_url="http://127.0.0.1")
        r = client.get("/api/photos", params={"sort": "uncertain", "status": "scored", "limit": 5})
        assert r.status_code == 200, r.text
        assert [it["id"] for it in r.json()["items"]] == [p.id for p in page[:5]]
        assert 'value="uncertain"' in client.get("/").text


def test_the_learned_weights_are_readable_per_feature(library: tuple[str, dict]) -> None:
    db, subjects = library
    with Library.open(db, scorer="heuristic") as lib:
        review(lib, subjects, tight_left, 40)
        res = personalize(PersonalizeSettings(scorer="heuristic"), progress=False, store=lib.store)
    pw = learned.read_version(res.checkpoint)
    eff = pw.effective_term_weights()
    assert set(learned.heuristic_input_names()) == set(eff)
    # This owner wants tight crops: the learned weight of the crop's area goes negative.
    assert eff["area"] < 0, eff
    assert np.all(np.isfinite(pw.w))
