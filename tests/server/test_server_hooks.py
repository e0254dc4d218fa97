"""Host hooks: a registered plugin sees photos scored, labels recorded and metadata written;
plugins installed through the ``clipcrop`` entry-point group are found and may add commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from PIL import Image
from support.server import make_photo

from clipcrop_plugin.api import Library
from clipcrop_plugin.config import Settings
from clipcrop_plugin.hooks import ENTRY_POINT_GROUP, hookimpl, make_plugin_manager


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def photo_scored(self, photo_path: str, suggestion: Any) -> None:
        self.calls.append(("scored", (photo_path, suggestion.ok)))

    @hookimpl
    def label_recorded(self, photo_path: str, label: dict[str, Any]) -> None:
        self.calls.append(("label", (photo_path, label["kind"], label["box"])))

    @hookimpl
    def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
        self.calls.append(("metadata", (photo_path, [Path(w).name for w in written], cleared)))


def test_facade_fires_hooks(tmp_path: Path) -> None:
    pm = make_plugin_manager(load_entrypoints=False)
    rec = Recorder()
    pm.register(rec)
    photo = make_photo(tmp_path / "a.jpg", 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with Library.open(f"sqlite:///{tmp_path / 'db.sqlite3'}", settings=Settings(), scorer="heuristic",
                      plugins=pm) as lib:
        s = lib.suggest(photo, aspects=["1:1"])
        bad = lib.suggest(broken)
        lib.record_label(photo, "accept", aspect="1:1", rank=1)
        lib.write_metadata(photo, aspect="1:1")
        lib.clear_metadata(photo)
        mem = lib.suggest_image(Image.open(photo), name="in-memory")
    assert s.ok and not bad.ok and mem.ok
    assert rec.calls[0] == ("scored", (str(photo), True))
    assert rec.calls[1] == ("scored", (str(broken), False))
    assert rec.calls[2] == ("label", (str(photo), "accept", list(s.best("1:1").box)))
    assert rec.calls[3] == ("metadata", (str(photo), ["a.xmp"], False))
    assert rec.calls[4] == ("metadata", (str(photo), ["a.xmp"], True))
    assert rec.calls[5] == ("scored", ("in-memory", True))


def test_suggest_image_matches_the_file_pipeline(tmp_path: Path) -> None:
    photo = make_photo(tmp_path / "r.jpg", 5, orientation=6)
    with Library.open(f"sqlite:///{tmp_path / 'db.sqlite3'}", settings=Settings(), scorer="heuristic",
                      plugins=make_plugin_manager(False)) as lib:
        from_file = lib.suggest(photo, record=False)
        from_image = lib.suggest_image(Image.open(photo))
        assert lib.count() == 0  # neither was stored
    assert (from_image.info.width, from_image.info.height) == (427, 640)  # orientation applied
    assert from_image.best().box == from_file.best().box


def test_entry_point_plugins_are_loaded_and_add_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real installed distribution (dist-info on sys.path) declaring the entry point.
    dist = tmp_path / "gallery_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: gallery-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\ngallery = gallery_hooks\n")
    (tmp_path / "gallery_hooks.py").write_text(
        "import click\n"
        "from clipcrop_plugin.hooks import hookimpl\n"
        "SEEN = []\n"
        "@hookimpl\n"
        "def label_recorded(photo_path, label):\n"
        "    SEEN.append((photo_path, label['kind']))\n"
        "@hookimpl\n"
        "def register_commands(cli):\n"
        "    @cli.command(name='gallery-sync')\n"
        "    def gallery_sync():\n"
        "        '''Push labels to the gallery.'''\n"
        "        click.echo('synced')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    pm = make_plugin_manager()
    assert "gallery" in [name for name, _ in pm.list_name_plugin()]

    group = click.Group("clipcrop")
    pm.hook.register_commands(cli=group)
    result = CliRunner().invoke(group, ["gallery-sync"])
    assert result.exit_code == 0 and result.output == "synced\n"

    photo = make_photo(tmp_path / "p.jpg", 1)
    with Library.open(f"sqlite:///{tmp_path / 'db.sqlite3'}", settings=Settings(), scorer="heuristic",
                      plugins=pm) as lib:
        lib.suggest(photo)
        lib.record_label(photo, "reject")
    assert sys.modules["gallery_hooks"].SEEN == [(str(photo), "reject")]


def test_suggest_records_failures_but_not_typos(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    with Library.open(f"sqlite:///{tmp_path / 'db.sqlite3'}", settings=Settings(), scorer="heuristic",
                      plugins=make_plugin_manager(False)) as lib:
        bad = lib.suggest(broken)
        typo = lib.suggest(tmp_path / "no-such-photo.jpg")
        page = lib.photos(sort="path", status="failed")
    assert not bad.ok and "empty" in bad.error and not typo.ok and "no such file" in typo.error
    assert [p.path for p in page.items] == [str(broken)] and "empty" in page.items[0].error


def test_a_broken_plugin_is_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbroken = broken_hooks_module\n")
    (tmp_path / "broken_hooks_module.py").write_text("raise RuntimeError('half-installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with caplog.at_level("WARNING", logger="clipcrop.hooks"):
        pm = make_plugin_manager()
    assert "broken" not in [name for name, _ in pm.list_name_plugin()]
    assert "skipping clipcrop plugin 'broken'" in caplog.text and "half-installed" in caplog.text
