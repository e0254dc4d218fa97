"""The exit codes in the README's table, one command each (and `--preview` names that are files)."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner
from support import ROOT
from support.store import make_photo

from clipcrop_plugin.cli.main import cli

README = ROOT / "README.md"


def _code(*args: str) -> int:
    return CliRunner().invoke(cli, list(args)).exit_code


def test_exit_codes_match_the_readme_table(tmp_path: Path) -> None:
    table = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n#", 1)[0]
    documented = {int(m.group(1)) for m in re.finditer(r"^\| `(\d+)` \|", table, re.M)}
    assert documented == {0, 1, 2, 3, 130}
    photo = make_photo(tmp_path / "ok.jpg", seed=1, size=(96, 64))
    (tmp_path / "bad.jpg").write_bytes(b"")
    assert _code("suggest", str(photo)) == 0
    assert _code("suggest", str(photo), str(tmp_path / "bad.jpg")) == 1  # one photo of two failed
    assert _code("suggest", str(photo), "--aspect", "banana") == 2  # a bad option value
    assert _code("suggest", str(photo), "--scorer", "no-such-scorer") == 2
    assert _code("status") == 3  # no daemon has run with this data folder


def test_preview_with_another_image_suffix_is_a_usage_error(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "ok.jpg", seed=2, size=(96, 64))
    res = CliRunner().invoke(cli, ["suggest", str(photo), "--preview", str(tmp_path / "x.png")])
    assert res.exit_code == 2
    assert res.stderr.strip() == f"error: --preview {tmp_path / 'x.png'}: previews are JPEG files; name it .jpg, or give a folder"
    assert not (tmp_path / "x.png").exists()
    res = CliRunner().invoke(cli, ["suggest", str(photo), "--preview", str(tmp_path / "p.jpg")])
    assert res.exit_code == 0 and (tmp_path / "p.jpg").is_file()
