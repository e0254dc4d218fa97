"""Listings say how much they show; nothing is silently empty, cut short or created by a typo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from support.store import make_photo
from support.terminal import on_terminal, piped

from clipcrop_plugin.cli.main import cli


@pytest.fixture
def library(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A scored library of 55 photos plus 2 unreadable files, and a runner bound to its database."""
    lib = tmp_path / "lib"
    for i in range(55):
        make_photo(lib / f"p{i:02d}.jpg", seed=i, size=(96, 64))
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (lib / "empty.jpg").write_bytes(b"")
    db = tmp_path / "lib.sqlite3"
    runner = CliRunner()

    def run(*args: str, code: int = 0):  # type: ignore[no-untyped-def]
        res = runner.invoke(cli, [*args, "--db", str(db)])
        assert res.exit_code == code, (args, res.output, res.stderr)
        return res

    run("scan", str(lib), "--scorer", "heuristic", code=1)  # two photos fail, the rest are scored
    return run, tmp_path


def test_query_says_how_many_matched_and_how_many_are_shown(library) -> None:  # type: ignore[no-untyped-def]
    run, _ = library
    res = run("query")
    assert res.stderr.strip().splitlines()[-1] == "50 of 55 photos shown (--limit 0 for all)"
    assert len([line for line in res.stdout.splitlines()[1:] if line.strip()]) == 50
    res = run("query", "--limit", "0", "--json")
    assert len(res.stdout.splitlines()) == 55 and all(json.loads(line)["crop"] for line in res.stdout.splitlines())
    assert res.stderr.strip() == "55 of 55 photos shown"
    res = run("query", "--limit", "10", "--offset", "50")
    assert res.stderr.strip().splitlines()[-1] == "5 of 55 photos shown (from #51)"
    res = run("query", "--min-score", "1000")
    assert res.stderr.strip() == "no photos match"


def test_failed_photos_list_with_the_default_sort(library) -> None:  # type: ignore[no-untyped-def]
    run, _ = library
    res = run("query", "--status", "failed")
    assert "broken.jpg" in res.stdout and "empty.jpg" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == "2 of 2 photos shown"


def test_export_query_exports_every_match_by_default(library) -> None:  # type: ignore[no-untyped-def]
    run, tmp_path = library
    out = tmp_path / "crops"
    res = run("export", "--query", "--out", str(out))
    assert len(list(out.glob("*.jpg"))) == 55
    assert "exporting: 55 of 55 photos shown" in res.stderr and "55 exported, 0 failed" in res.stderr


def test_a_mistyped_db_is_an_error_and_creates_nothing(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = tmp_path / "typo.sqlite3"
    for args in (["query"], ["show", "1"], ["export", "--query", "--out", str(tmp_path / "o")], ["db", "current"]):
        res = runner.invoke(cli, [*args, "--db", str(missing)])
        if args == ["db", "current"]:
            assert res.exit_code == 0 and "no database yet" in res.output
        else:
            assert res.exit_code == 1, (args, res.output)
            assert res.stderr.strip() == (f"error: no crop database at {missing} (create one with `clipcrop scan "
                                          f"--db {missing} FOLDER` or `clipcrop db upgrade --db {missing}`)")
        assert not missing.exists()
    nowhere = tmp_path / "no-such-folder" / "lib.sqlite3"
    res = runner.invoke(cli, ["scan", str(tmp_path), "--db", str(nowhere)])
    assert res.exit_code == 1 and res.stderr.strip() == f"error: no such folder for the database: {nowhere.parent}"
    # The commands that build a library create it on purpose.
    res = runner.invoke(cli, ["db", "upgrade", "--db", str(missing)])
    assert res.exit_code == 0 and missing.exists()


def test_labels_and_elements_read_as_words(library) -> None:  # type: ignore[no-untyped-def]
    run, tmp_path = library
    photo = str(tmp_path / "lib" / "p00.jpg")
    res = run("label", photo, "--box", "0,0,60,40")
    assert res.stdout.strip().endswith(f"your crop 0,0,60,40 on {photo}")
    res = run("label", photo, "--accept", "1")
    assert " accept grid #1 (box " in res.stdout
    res = run("show", photo)
    assert "your crop 0,0,60,40" in res.stdout and "box box" not in res.stdout
    assert "_" not in "".join(line.split("  ")[-1] for line in res.stdout.splitlines() if "vs full frame" in line)


def test_progress_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    for i in range(3):
        make_photo(folder / f"p{i}.jpg", seed=i, size=(96, 64))
    scan = ("scan", str(folder), "--scorer", "heuristic", "--db")
    on_pipe = piped(*scan, str(tmp_path / "a.sqlite3"))
    assert on_pipe.returncode == 0 and "scanning" not in on_pipe.stderr
    code, _out, drawn = on_terminal(*scan, str(tmp_path / "b.sqlite3"))
    assert code == 0 and b"scanning" in drawn and b"3/3" in drawn


def test_unknown_scorer_and_aspect_name_the_known_ones(library) -> None:  # type: ignore[no-untyped-def]
    run, _ = library
    res = run("query", "--scorer", "no-such-scorer", code=2)
    assert res.stderr.strip() == "error: no runs of scorer 'no-such-scorer' in this database; known: heuristic"
    res = run("query", "--aspect", "7:3", code=2)
    assert res.stderr.strip().startswith("error: no '7:3' crops in this database; scored sets: grid")
    res = run("query", "--enhances", "sharpness", code=2)
    assert res.stderr.strip().startswith("error: unknown element 'sharpness'; known: center, rule_of_thirds")


def test_clearing_a_missing_photo_is_an_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["xmp", "clear", str(tmp_path / "typo.jpg")])
    assert res.exit_code == 1 and f"error: {tmp_path / 'typo.jpg'}: no such file" in res.stderr


def test_a_file_named_like_an_option_gets_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    make_photo(tmp_path / "-dash.jpg", seed=3, size=(96, 64))
    cmd = [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()", "suggest", "-dash.jpg"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "goes after --: clipcrop suggest -- -dash.jpg" in res.stderr
    ok = subprocess.run(cmd[:-1] + ["--", "-dash.jpg"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr


def test_models_import_of_a_photo_says_what_it_is_not(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "bad.jpg", seed=5, size=(64, 48))
    res = CliRunner().invoke(cli, ["models", "import", str(photo)])
    assert res.exit_code == 1
    assert res.stderr.strip() == f"error: {photo}: not a clipcrop checkpoint (expected NAME.safetensors with its NAME.json sidecar)"
    res = CliRunner().invoke(cli, ["models", "import", str(tmp_path / "typo.jpg")])
    assert res.exit_code == 1 and res.stderr.strip() == f"error: {tmp_path / 'typo.jpg'}: no such file"
