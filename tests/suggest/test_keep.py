"""Crop or keep, end to end: what suggest, scan --xmp, xmp write, the daemon, query and show do
with a photo whose best grid crop does not beat the full frame (issue 11)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.store import make_photo
from support.xmp import make_suggestion

from clipcrop_plugin.cli.main import cli
from clipcrop_plugin.xmp.writer import write_crop_metadata


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    lib = tmp_path / "lib"
    for i in range(3):
        make_photo(lib / f"p{i}.jpg", seed=i, size=(240, 160))
    db = tmp_path / "keep.sqlite3"
    config = tmp_path / "config.toml"
    monkeypatch.setenv("CLIPCROP_CONFIG", str(config))
    monkeypatch.setenv("CLIPCROP_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()

    def run(*args: str, margin: float | None = None, code: int = 0):  # type: ignore[no-untyped-def]
        config.write_text(f"keep_margin = {margin}\n" if margin is not None else "", encoding="utf-8")
        res = runner.invoke(cli, list(args))
        assert res.exit_code == code, (res.output, res.stderr, res.exception)
        assert "Traceback" not in res.output + res.stderr
        return res

    return lib, db, run


def sidecars(lib: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(lib.glob("*.xmp"))}


def grid_improvements(lib: Path, run) -> dict[str, float]:  # type: ignore[no-untyped-def]
    res = run("suggest", str(lib), "--json", "--scorer", "heuristic", "--top", "1")
    out = {}
    for line in res.stdout.splitlines():
        obj = json.loads(line)
        out[Path(obj["path"]).name] = next(c["improvement"] for c in obj["crops"] if c["aspect"] == "grid")
    return out


def test_keep_as_is_writes_no_crop_anywhere_and_a_requested_ratio_still_gets_one(env) -> None:  # type: ignore[no-untyped-def]
    lib, db, run = env
    imps = grid_improvements(lib, run)
    margin = max(imps.values()) + 0.01  # every photo's best grid crop falls short of it: keep
    text = run("suggest", str(lib), "--scorer", "heuristic", "--top", "1", margin=margin).stdout
    assert text.count("suggestion: keep as is") == 3
    obj = json.loads(run("suggest", str(lib / "p0.jpg"), "--json", "--scorer", "heuristic", margin=margin).stdout)
    assert obj["choice"]["keep"] is True and obj["choice"]["box"] is None

    run("scan", str(lib), "--scorer", "heuristic", "--xmp", "--db", str(db), margin=margin)
    assert not any(b'HasCrop="True"' in data for data in sidecars(lib).values())
    rows = [json.loads(x) for x in run("query", "--json", "--db", str(db), margin=margin).stdout.splitlines()]
    assert len(rows) == 3 and all(r["keep"] and r["crop"]["aspect"] == "grid" for r in rows)
    assert "keep as is" in run("query", "--db", str(db), margin=margin).stdout
    shown = run("show", str(lib / "p0.jpg"), "--db", str(db), margin=margin).stdout
    assert "suggestion: keep as is" in shown and "best grid candidate (not written)" in shown
    assert json.loads(run("show", str(lib / "p0.jpg"), "--json", "--db", str(db), margin=margin).stdout)["keep"]

    # A ratio the user asks for always gets its best crop, whatever the margin.
    run("xmp", "write", str(lib / "p1.jpg"), "--aspect", "4:5", "--source", "score", "--scorer", "heuristic",
        margin=margin)
    assert b'HasCrop="True"' in (lib / "p1.xmp").read_bytes()
    assert b"4:5" in (lib / "p1.xmp").read_bytes()


def test_a_keep_clears_the_crop_clipcrop_wrote_before(env, exiftool: str) -> None:  # type: ignore[no-untyped-def]
    from support.xmp import exiftool_json

    lib, _db, run = env
    photo = lib / "p2.jpg"
    before = photo.read_bytes()
    imps = grid_improvements(lib, run)
    # First a margin every crop beats: the crop is written ...
    run("xmp", "write", str(photo), "--source", "score", "--scorer", "heuristic", margin=imps["p2.jpg"] - 1.0)
    [tags] = exiftool_json(exiftool, "-XMP-crs:all", str(photo.with_suffix(".xmp")))
    assert tags["HasCrop"] is True
    # ... then one it does not: the same command clears it, and the photo is untouched.
    res = run("xmp", "write", str(photo), "--source", "score", "--scorer", "heuristic", margin=imps["p2.jpg"] + 1.0)
    assert "keep as is" in res.output
    left = Path(str(photo.with_suffix(".xmp")))
    assert not left.exists() or b"HasCrop" not in left.read_bytes()
    assert photo.read_bytes() == before


def test_the_daemon_writes_no_crop_for_a_keep(tmp_path: Path) -> None:
    import subprocess
    import sys

    lib = tmp_path / "lib"
    for i in range(2):
        make_photo(lib / f"d{i}.jpg", seed=10 + i, size=(240, 160))
    config = tmp_path / "config.toml"
    config.write_text(f'db_url = "sqlite:///{tmp_path / "d.sqlite3"}"\nscorer = "heuristic"\n'
                      "stable_seconds = 0.2\nkeep_margin = 1000.0\n", encoding="utf-8")
    env = {**os.environ, "CLIPCROP_CONFIG": str(config), "CLIPCROP_DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run([sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", "watch", str(lib),
                          "--once"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert not any(b'HasCrop="True"' in p.read_bytes() for p in lib.glob("*.xmp"))
    config.write_text(config.read_text(encoding="utf-8").replace("1000.0", "-inf"), encoding="utf-8")
    (lib / "d0.jpg").unlink()
    make_photo(lib / "d2.jpg", seed=12, size=(240, 160))  # new content: scored by this run
    res = subprocess.run([sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", "watch", str(lib),
                          "--once"], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert b'HasCrop="True"' in (lib / "d2.xmp").read_bytes()


def test_writer_result_says_kept(tmp_path: Path) -> None:
    photo = tmp_path / "w.jpg"
    make_photo(photo, seed=3, size=(200, 100))
    winning = make_suggestion(photo, score=0.8)  # improvement +0.3 over the full frame
    assert not write_crop_metadata(photo, winning, keep_margin=0.02).kept
    assert b'HasCrop="True"' in Path(str(photo.with_suffix(".xmp"))).read_bytes()
    losing = make_suggestion(photo, score=0.49)  # -0.01: not better than the full frame
    result = write_crop_metadata(photo, losing, keep_margin=0.02)
    assert result.kept and result.note and "cleared" in result.note
    assert not Path(str(photo.with_suffix(".xmp"))).exists()
