"""Subjects through the store, the API, ``suggest --json``, ``show`` and previews; the 0003 migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image
from support.store import database_at_revision, synthetic_suggestion

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.results import Subject
from clipcrop_plugin.store import Store, migrate
from clipcrop_plugin.store.packing import SUBJECT_KINDS, pack_candidates, pack_subjects, unpack_subjects

SUBJECTS = [Subject("face", (1200, 400, 1500, 760), 0.8123), Subject("profile_face", (3000, 500, 3200, 720), 0.41),
            Subject("person", (1000, 300, 1800, 2990), 0.66), Subject("salient", (900, 200, 2000, 3000), 0.5),
            Subject("content", (0, 380, 4000, 2620), 1.0)]


def _astronaut(folder: Path) -> Path:
    data = pytest.importorskip("skimage.data")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=92)
    return path


def test_pack_roundtrip_is_compact_and_refuses_foreign_data() -> None:
    blob = pack_subjects(SUBJECTS)
    assert len(blob) == 3 + 18 * len(SUBJECTS)
    back = unpack_subjects(blob)
    assert [(s.kind, s.box) for s in back] == [(s.kind, s.box) for s in SUBJECTS]
    assert all(abs(a.score - b.score) <= 1 / 510 + 1e-4 for a, b in zip(back, SUBJECTS))
    assert unpack_subjects(pack_subjects([])) == [] and unpack_subjects(None) == []
    # Stored codes never move: a kind is stored as its index, new kinds are appended.
    assert SUBJECT_KINDS[:5] == ("face", "profile_face", "person", "salient", "content")
    from clipcrop_plugin.errors import StoreError

    with pytest.raises(StoreError):
        unpack_subjects(b"XX1" + blob[3:])
    with pytest.raises(StoreError):
        unpack_subjects(blob[:-1])


def test_record_and_read_back_with_the_photo(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with Store.open(str(tmp_path / "db.sqlite3")) as store:
        s = synthetic_suggestion("/p/a.jpg", rng)
        s.subjects = list(SUBJECTS)
        failed = synthetic_suggestion("/p/b.jpg", rng)
        failed.subjects_error = "subject detection failed (RuntimeError: boom)"
        pa, pb = store.record_suggestions([(s, "h" * 64, None, None), (failed, "g" * 64, None, None)])
        d = store.photo_detail(pa)
        assert [(x.kind, x.box) for x in d.subjects] == [(x.kind, x.box) for x in SUBJECTS]
        assert d.to_dict()["subjects"][0] == {"kind": "face", "box": [1200, 400, 1500, 760], "score": 0.8118}
        assert store.photo_detail(pb).subjects == []
        # A duplicate file gets the run with its subjects.
        dup = store.copy_scores(pa, "/p/copy.jpg")
        assert [x.box for x in store.photo_detail(dup).subjects] == [x.box for x in SUBJECTS]
        # A re-score replaces them.
        s2 = synthetic_suggestion("/p/a.jpg", rng)
        s2.subjects = [Subject("salient", (10, 10, 20, 20), 0.3)]
        store.record_suggestion(s2, "h" * 64)
        assert [x.box for x in store.photo_detail(pa).subjects] == [(10, 10, 20, 20)]
    con = sqlite3.connect(tmp_path / "db.sqlite3")
    blobs = dict(con.execute("SELECT p.path, r.subjects FROM scoring_runs r JOIN photos p ON p.id = r.photo_id"))
    con.close()
    assert blobs["/p/b.jpg"] is None  # detection failed: no subject data, not "no subjects"
    assert len(blobs["/p/a.jpg"]) == 3 + 18


def test_a_0002_database_upgrades_and_keeps_its_runs(tmp_path: Path) -> None:
    blob = pack_candidates(np.array([[0, 0, 100, 80], [10, 10, 60, 50]]), np.array([0.5, 0.7], np.float32),
                           np.array([0, 1], np.uint8), np.array([1, 1], np.uint16)).hex()
    path = database_at_revision(
        tmp_path / "old.sqlite3", "0002",
        "INSERT INTO photos (id, path, folder, status, offline, width, height, created_at, updated_at)"
        " VALUES (1, '/p/a.jpg', '/p', 'scored', 0, 100, 80, '2024-01-01', '2024-01-01')",
        "INSERT INTO scoring_runs (id, photo_id, content_hash, scorer, weights_hash, created_at, active, width,"
        " height, n_candidates, aspects, full_score, best_score, best_improvement, candidates)"
        f" VALUES (1, 1, 'abc', 'heuristic', '', '2024-01-01', 1, 100, 80, 2, 'full,grid', 0.5, 0.7, 0.2, X'{blob}')",
    )
    with Store.open(str(path)) as store:
        assert store.revision() == migrate.head_revision()  # 0003 or a later head
        d = store.photo_detail(1)
        assert d.subjects == [] and len(d.candidates) == 2 and d.run is not None
        # And the upgraded database takes new runs with subjects.
        s = synthetic_suggestion("/p/new.jpg", np.random.default_rng(1))
        s.subjects = SUBJECTS[:1]
        pid = store.record_suggestion(s, "n" * 64)
        assert store.photo_detail(pid).subjects[0].kind == "face"
    assert list(tmp_path.glob("old.sqlite3.0002.*.bak"))


def test_downgrade_to_0002_drops_only_the_column(tmp_path: Path) -> None:
    from alembic import command

    from clipcrop_plugin.store.engine import make_engine

    path = tmp_path / "db.sqlite3"
    with Store.open(str(path)) as store:
        s = synthetic_suggestion("/p/a.jpg", np.random.default_rng(0))
        s.subjects = SUBJECTS
        store.record_suggestion(s, "h" * 64)
    engine = make_engine(f"sqlite:///{path}")
    cfg = migrate.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    engine.dispose()
    con = sqlite3.connect(path)
    cols = [r[1] for r in con.execute("PRAGMA table_info(scoring_runs)")]
    assert "subjects" not in cols and con.execute("SELECT count(*) FROM scoring_runs").fetchone()[0] == 1
    con.close()


def test_suggest_json_scan_show_api_and_preview(tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    photo = _astronaut(tmp_path / "lib")
    db = str(tmp_path / "lib.sqlite3")
    runner = CliRunner()
    res = runner.invoke(cli, ["suggest", str(photo), "--scorer", "heuristic", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.splitlines()[0])
    kinds = [s["kind"] for s in out["subjects"]]
    assert "face" in kinds and all(set(s) == {"kind", "box", "score"} for s in out["subjects"])
    text = runner.invoke(cli, ["suggest", str(photo), "--scorer", "heuristic"])
    assert "subjects: face" in text.stdout

    res = runner.invoke(cli, ["scan", str(photo.parent), "--scorer", "heuristic", "--db", db])
    assert res.exit_code == 0, res.output
    shown = runner.invoke(cli, ["show", str(photo), "--db", db])
    assert "subjects:" in shown.stdout and "face" in shown.stdout, shown.output
    as_json = json.loads(runner.invoke(cli, ["show", str(photo), "--db", db, "--json"]).stdout)
    assert [s["kind"] for s in as_json["subjects"]] == kinds
    preview = tmp_path / "preview.jpg"
    res = runner.invoke(cli, ["show", str(photo), "--db", db, "--preview", str(preview)])
    assert res.exit_code == 0, res.output
    face = next(s for s in out["subjects"] if s["kind"] == "face")
    with Image.open(preview) as im:
        px = im.convert("RGB")
        # The thin white outline of the face is drawn across her hair (the photo is drawn at its
        # own 512 px, left of the chart panel).
        x1, y1, x2, _y2 = face["box"]
        edge = [px.getpixel((round(x), y1)) for x in np.linspace(x1 + 4, x2 - 4, 12)]
        above = [px.getpixel((round(x), y1 - 4)) for x in np.linspace(x1 + 4, x2 - 4, 12)]
        assert sum(sum(p) / 3 >= 225 for p in edge) >= 9, edge
        assert sum(sum(p) / 3 >= 225 for p in above) <= 3, above

    from clipcrop_plugin.api import Library
    from clipcrop_plugin.config import Settings
    from clipcrop_plugin.server import create_app

    with Library.open(f"sqlite:///{db}", settings=Settings(), scorer="heuristic") as lib:
        client = TestClient(create_app(lib, thumbnail_dir=tmp_path / "thumbs"), base_url="http://127.0.0.1")
        pid = client.get("/api/photos").json()["items"][0]["id"]
        d = client.get(f"/api/photos/{pid}").json()
        assert [s["kind"] for s in d["subjects"]] == kinds
        s0 = d["subjects"][0]
        assert s0["fractions"] == [round(v / 512, 6) for v in s0["box"]] and 0 <= s0["score"] <= 1
        rebuilt = lib.suggestion(pid)
        assert rebuilt is not None and [s.kind for s in rebuilt.subjects] == kinds
