"""The job layer: every entry point stores, publishes and announces a photo the same way.

Real files, a real SQLite library, the heuristic scorer, the real CLI and the real server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from support.server import BASE, SAFE, SampleLibrary
from support.store import make_photo

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.daemon.backend import iter_photos
from clipcrop_plugin.daemon.events import is_ignored
from clipcrop_plugin.hashing import content_hash
from clipcrop_plugin.hooks import get_plugin_manager, hookimpl
from clipcrop_plugin.photofiles import iter_photo_paths
from clipcrop_plugin.store import Store
from clipcrop_plugin.xmp import read_crop_metadata


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def summary(out: str) -> str:
    return out.strip().splitlines()[-1]


class Recorder:
    """A host plugin that counts what it hears."""

    def __init__(self) -> None:
        self.scored: list[str] = []
        self.written: list[tuple[str, bool, list[str]]] = []

    @hookimpl
    def photo_scored(self, photo_path: str, suggestion: object) -> None:
        self.scored.append(Path(photo_path).name)

    @hookimpl
    def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
        self.written.append((Path(photo_path).name, cleared, [Path(w).name for w in written]))


@pytest.fixture()
def recorder():  # type: ignore[no-untyped-def]
    pm, rec = get_plugin_manager(), Recorder()
    pm.register(rec)
    yield rec
    pm.unregister(rec)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    lib = tmp_path / "photos"
    for i in range(3):
        make_photo(lib / f"p{i}.jpg", seed=i)
    return lib


def _config(text: str) -> None:
    import os

    Path(os.environ["CLIPCROP_CONFIG"]).write_text(text, encoding="utf-8")


def test_embedding_through_the_server_does_not_cause_rescoring(sample: SampleLibrary, tmp_path: Path) -> None:
    from clipcrop_plugin.server import create_app

    client = TestClient(create_app(sample.library, thumbnail_dir=tmp_path / "thumbs"), base_url=BASE)
    items = client.get("/api/photos", params={"sort": "path"}).json()["items"][:2]
    for item in items:
        path = str(sample.folder / item["name"])
        before = content_hash(path)
        r = client.post(f"/api/photos/{item['id']}/metadata", json={"embed": True}, headers=SAFE)
        assert r.status_code == 200, r.text
        assert read_crop_metadata(path)["location"] == "embedded"
        after = content_hash(path)
        assert after != before
        assert sample.library.store.find_path(path).content_hash == after
    sample.library.close()
    code, out, err = run("scan", str(sample.folder), "--scorer", "heuristic", "--db", sample.url)
    assert code == 0, err
    assert summary(out).startswith("6/6 photos: 0 scored, 6 unchanged"), out


def test_scan_xmp_embeds_announces_once_and_the_next_scan_scores_nothing(
        folder: Path, tmp_path: Path, recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    # keep_margin = -inf: every photo gets its crop written ("keep as is" is tested in test_keep.py).
    _config("embed = true\nkeep_margin = -inf\n")
    db = tmp_path / "lib.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{db}")
    code, out, err = run("scan", str(folder), "--scorer", "heuristic", "--xmp")
    assert code == 0, err
    assert summary(out).startswith("3/3 photos: 3 scored"), out
    names = [f"p{i}.jpg" for i in range(3)]
    assert sorted(recorder.scored) == names
    assert sorted(recorder.written) == [(n, False, [n]) for n in names]  # embedded: the photo itself
    for n in names:
        assert read_crop_metadata(folder / n)["location"] == "embedded"
    with Store.open(str(db)) as store:
        assert store.find_path(str(folder / "p0.jpg")).content_hash == content_hash(folder / "p0.jpg")

    recorder.scored.clear()
    code, out, _ = run("scan", str(folder), "--scorer", "heuristic", "--xmp")
    assert code == 0 and summary(out).startswith("3/3 photos: 0 scored, 3 unchanged"), out
    assert recorder.scored == []

    # Clearing embedded XMP rewrites the photo too: the database follows, nothing is rescored.
    code, _, err = run("xmp", "clear", str(folder / "p1.jpg"))
    assert code == 0, err
    assert read_crop_metadata(folder / "p1.jpg") is None
    code, out, _ = run("scan", str(folder), "--scorer", "heuristic")
    assert code == 0 and summary(out).startswith("3/3 photos: 0 scored"), out


def test_xmp_write_embed_from_stored_scores_does_not_cause_rescoring(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "lib.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{db}")
    assert run("scan", str(folder), "--scorer", "heuristic")[0] == 0
    code, out, err = run("xmp", "write", str(folder), "--embed", "--source", "db")
    assert code == 0, err
    code, out, _ = run("scan", str(folder), "--scorer", "heuristic")
    assert code == 0 and summary(out).startswith("3/3 photos: 0 scored"), out


def test_scan_skips_system_folders_like_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "nas"
    make_photo(lib / "2024" / "IMG_1.jpg", seed=1)
    for junk in ("@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg", "#recycle/old.jpg", "#snapshot/daily/IMG_1.jpg",
                 "2024/@eaDir/IMG_1.jpg/SYNOFILE_THUMB_M.jpg"):
        make_photo(lib / junk, seed=2)
    (lib / "2024" / ".IMG_1.jpg.clipcrop-tmp-1a2b3c4d").write_bytes((lib / "2024" / "IMG_1.jpg").read_bytes())
    (lib / "2024" / ".DS_Store").write_bytes(b"\0")
    (lib / "2024" / "Thumbs.db").write_bytes(b"\0")
    walked = [str(p) for p in iter_photo_paths([lib])]
    assert walked == [str(lib / "2024" / "IMG_1.jpg")]
    daemon = [p for p in iter_photos(str(lib)) if not is_ignored(p, lib)]
    assert daemon == walked
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{tmp_path / 'lib.sqlite3'}")
    code, out, err = run("scan", str(lib), "--scorer", "heuristic")
    assert code == 0, err
    assert summary(out).startswith("1/1 photos: 1 scored"), out


def test_scan_honours_the_configured_aspects_and_batch_size(folder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    _config('aspects = ["portrait", "1:1"]\nbatch_size = 2\n')
    db = tmp_path / "lib.sqlite3"
    monkeypatch.setenv("CLIPCROP_DB", f"sqlite:///{db}")
    code, out, err = run("scan", str(folder), "--scorer", "heuristic", "--xmp")
    assert code == 0, err
    with Store.open(str(db)) as store:
        assert set(store.photo_detail(str(folder / "p0.jpg")).best) >= {"grid", "4:5", "1:1"}
        assert store.active_aspects() == ["grid", "1:1", "4:5"]
    # The sidecar carries the best crop of the first configured set.
    assert read_crop_metadata(folder / "p0.jpg")["clipcrop"]["Aspect"] == "4:5"
    # An explicit --aspect replaces the configured ones.
    make_photo(folder / "p9.jpg", seed=9)
    assert run("scan", str(folder), "--scorer", "heuristic", "--aspect", "16:9")[0] == 0
    with Store.open(str(db)) as store:
        assert "4:5" not in store.photo_detail(str(folder / "p9.jpg")).best


def test_a_bad_configured_aspect_is_one_line_and_exit_2(folder: Path, tmp_path: Path) -> None:
    _config('aspects = ["wide-ish"]\n')
    code, _, err = run("scan", str(folder), "--scorer", "heuristic", "--db", str(tmp_path / "x.sqlite3"))
    assert code == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1, err


def test_a_raising_plugin_is_logged_by_batch_jobs_and_raised_for_the_facade(
        folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from clipcrop_plugin.hooks import make_plugin_manager
    from clipcrop_plugin.jobs import MetadataPolicy, publish
    from clipcrop_plugin.scan import scan_folders
    from clipcrop_plugin.scoring.registry import load_scorer
    from clipcrop_plugin.xmp.fromstore import suggestion_from_store

    class Broken:
        @hookimpl
        def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
            raise RuntimeError("gallery offline")

    pm = make_plugin_manager(False)
    pm.register(Broken())
    with Store.open(str(tmp_path / "lib.sqlite3")) as store:
        report = scan_folders(store, [folder], load_scorer("heuristic"), policy=MetadataPolicy("sidecar", keep_margin=float("-inf")),
                              plugins=pm)
        assert report.scored == 3 and not report.metadata_errors
        assert caplog.text.count("gallery offline") == 3
        s = suggestion_from_store(store, folder / "p0.jpg")
        assert s is not None
        with pytest.raises(RuntimeError, match="gallery offline"):
            publish(store, s, MetadataPolicy("sidecar", keep_margin=float("-inf")), plugins=pm, strict=True)


def test_metadata_policy_rejects_an_unknown_mode() -> None:
    from clipcrop_plugin.errors import ConfigError
    from clipcrop_plugin.jobs import MetadataPolicy

    with pytest.raises(ConfigError, match="sidecar, embed, none"):
        MetadataPolicy("inline")


def test_a_scan_killed_between_commit_and_sidecar_owes_the_sidecar_to_the_next_pass(tmp_path: Path) -> None:
    # SIGKILL after the batch's scores are committed but before all its sidecars are written: the
    # next scan finds those photos unchanged and must write their sidecars from the stored scores
    # (before, it skipped them for good), without scoring anything again.
    import shutil
    import signal
    import subprocess
    import sys

    from support import ROOT

    lib = tmp_path / "lib"
    for i in range(6):
        make_photo(lib / f"p{i}.jpg", seed=i, size=(160, 120))
    db = f"sqlite:///{tmp_path / 'lib.sqlite3'}"
    code = (
        "import os, signal, sys\n"
        "from clipcrop_plugin import jobs\n"
        "from clipcrop_plugin.scan import scan_folders\n"
        "from clipcrop_plugin.scoring.registry import load_scorer\n"
        "from clipcrop_plugin.store import Store\n"
        "real, n = jobs.publish, [0]\n"
        "def dying(*a, **k):\n"
        "    n[0] += 1\n"
        "    if n[0] == 3:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(*a, **k)\n"
        "jobs.publish = dying\n"
        "with Store.open(sys.argv[1]) as store:\n"
        "    scan_folders(store, [sys.argv[2]], load_scorer('heuristic'), policy=jobs.MetadataPolicy('sidecar'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, db, str(lib)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == -signal.SIGKILL, out.stderr
    with Store.open(db) as store:
        # The whole batch stays held (a hold is released once per batch, after its writes): the
        # two written before the kill are rewritten, identically, by the next pass.
        assert store.held_metadata() == {str(p) for p in lib.glob("*.jpg")}
    assert len(list(lib.glob("*.xmp"))) < 6
    code, stdout, stderr = run("scan", str(lib), "--scorer", "heuristic", "--xmp", "--db", db)
    assert code == 0, stderr
    assert "0 scored" in summary(stdout) and "6 unchanged" in summary(stdout), stdout
    with Store.open(db) as store:
        assert store.held_metadata() == set()
    # The same sidecars as a scan that was never killed.
    ref = tmp_path / "ref"
    shutil.copytree(lib, ref, ignore=shutil.ignore_patterns("*.xmp"))
    ref_db = f"sqlite:///{tmp_path / 'ref.sqlite3'}"
    code, _stdout, stderr = run("scan", str(ref), "--scorer", "heuristic", "--xmp", "--db", ref_db)
    assert code == 0, stderr
    assert sorted(p.name for p in lib.glob("*.xmp")) == sorted(p.name for p in ref.glob("*.xmp"))
    for sidecar in ref.glob("*.xmp"):
        photo = sidecar.with_suffix(".jpg")
        ours, theirs = read_crop_metadata(str(lib / photo.name)), read_crop_metadata(str(photo))
        assert ours is not None and theirs is not None
        # Where and when each was written differ; the crop, scores and explanation must not.
        for meta in (ours, theirs):
            meta.pop("file")
            meta["clipcrop"].pop("Time")
        assert ours == theirs
