"""The host examples work: the embedding example runs, curl.md covers every endpoint, and the
darktable Lua script (run in a real Lua VM with a stand-in ``darktable`` module) writes the crop
through the real CLI or the real HTTP API and has darktable re-process unedited images (4.2 API:
is_altered, reset, drop_cache; never apply_sidecar), leaving edited ones alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT
from support.server import LiveServer, build_library, make_photo

from clipcrop_plugin.server import create_app

EXAMPLES = ROOT / "examples"
CLIPCROP = Path(sys.executable).with_name("clipcrop")

# A stand-in for darktable's Lua API: just what clipcrop.lua touches. execute() really runs the
# command, as darktable does.
FAKE_DARKTABLE = r"""
local state = { prefs = {}, applied = {}, printed = {}, executed = {}, shortcut = nil, lib = nil }
local dt = {
  preferences = {
    register = function(mod, name, typ, label, tip, default) state.prefs[name] = state.prefs[name] or default end,
    read = function(mod, name, typ) return state.prefs[name] end,
  },
  control = { execute = function(cmd) table.insert(state.executed, cmd)
                                      local ok, how, code = os.execute(cmd); return code end },
  gui = { action_images = {}, views = { lighttable = "lighttable" },
          create_job = function(text, cancellable) return { valid = true, percent = 0 } end },
  print = function(s) table.insert(state.printed, s) end,
  print_error = function(s) table.insert(state.printed, "E: " .. s) end,
  print_log = function(s) table.insert(state.printed, "L: " .. s) end,
  register_event = function(mod, ev, fn, name) state.shortcut = fn end,
  register_lib = function(mod, name, ex, re, views, widget) state.lib = widget end,
  new_widget = function(kind) return function(t) return t end end,
  database = { import = function(p) table.insert(state.printed, "import " .. p) end },
}
package.preload["darktable"] = function() return dt end
return { dt = dt, state = state }
"""


@pytest.fixture()
def lua():  # type: ignore[no-untyped-def]
    lupa = pytest.importorskip("lupa", reason="lupa (a Lua runtime) is needed to run the darktable script")
    runtime = lupa.LuaRuntime(unpack_returned_tuples=True)
    # lupa's Lua is built without io.popen; give it one backed by a real shell.
    runtime.globals().py_shell = lambda cmd: subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout
    runtime.execute("""io.popen = function(cmd) local out = py_shell(cmd)
        return { read = function(self, fmt) return out end, close = function(self) return true end } end""")
    env = runtime.execute(FAKE_DARKTABLE)
    runtime.execute((EXAMPLES / "darktable" / "clipcrop.lua").read_text())
    return runtime, env


def _image(runtime, path: Path, altered: bool = False):  # type: ignore[no-untyped-def]
    # darktable 4.2's image object: no apply_sidecar (5.2+), so calling it fails as it would there.
    make = runtime.eval("""function(dir, name, altered) local img = { path = dir, filename = name,
        sidecar = dir .. "/" .. name .. ".xmp", is_altered = altered, calls = {} }
      function img:reset() table.insert(self.calls, "reset") end
      function img:drop_cache() table.insert(self.calls, "drop_cache") end
      return img end""")
    return make(str(path.parent), path.name, altered)


def _run_selected(runtime, env, images) -> None:  # type: ignore[no-untyped-def]
    table = runtime.table(*images)
    env.dt.gui.action_images = table
    env.state.shortcut()


def test_darktable_script_writes_base_sidecar_through_the_cli(lua, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, env = lua
    Path(os.environ["CLIPCROP_CONFIG"]).write_text('scorer = "heuristic"\n')
    os.environ["CLIPCROP_DB"] = f"sqlite:///{tmp_path / 'dt.sqlite3'}"
    try:
        photo = make_photo(tmp_path / "darktable photos" / "IMG 1's.jpg", 4)
        env.state.prefs["executable"] = str(CLIPCROP)
        env.state.prefs["aspect"] = "3:2"
        img = _image(runtime, photo)
        edited = _image(runtime, make_photo(tmp_path / "darktable photos" / "edited.jpg", 5), altered=True)
        _run_selected(runtime, env, [img, edited])
    finally:
        del os.environ["CLIPCROP_DB"]
    sidecar = photo.with_suffix(".xmp")  # <basename>.xmp: what darktable's Lightroom importer reads
    assert sidecar.exists(), list(env.state.printed.values())
    xml = sidecar.read_text()
    assert "CropLeft" in xml and "HasCrop" in xml
    assert list(img.calls.values()) == ["reset", "drop_cache"]  # re-processed: darktable applies the crop
    assert len(edited.calls) == 0 and sidecar.with_name("edited.xmp").exists()  # written; the user's history kept
    cmd = env.state.executed[1]
    assert "xmp write --naming base --aspect '3:2'" in cmd and "'\\''" in cmd  # the quote in the name survived
    assert "2 crop(s) written, 0 failed; 1 already edited, crop not applied" in env.state.printed[1]
    assert "edited.jpg" in env.state.printed[1]
    env.state.prefs["reset_edited"] = True  # opted in: edited images are reset too
    _run_selected(runtime, env, [edited])
    assert list(edited.calls.values()) == ["reset", "drop_cache"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_darktable_script_http_mode_uses_the_api(lua, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runtime, env = lua
    sample = build_library(tmp_path, n=2)
    try:
        with LiveServer(create_app(sample.library, thumbnail_dir=tmp_path / "t")) as live:
            env.state.prefs["mode"] = "http"
            env.state.prefs["url"] = live.url
            known = _image(runtime, sample.photos[1])
            stranger = _image(runtime, make_photo(tmp_path / "elsewhere" / "new.jpg", 9))
            _run_selected(runtime, env, [known, stranger])
    finally:
        sample.library.close()
    assert sample.photos[1].with_suffix(".xmp").exists()
    assert not (tmp_path / "elsewhere" / "new.xmp").exists()
    printed = list(env.state.printed.values())
    assert any("new.jpg is not in clipcrop's database" in p for p in printed)
    assert "1 crop(s) written, 1 failed" in printed[-1]
    assert list(known.calls.values()) == ["reset", "drop_cache"] and len(stranger.calls) == 0


def test_embedding_example_runs(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for i in range(3):
        make_photo(folder / f"P{i}.jpg", i + 10, (640, 427) if i else (427, 640))
    r = subprocess.run(
        [sys.executable, str(EXAMPLES / "embed_in_gallery.py"), str(folder), "--scorer", "heuristic",
         "--db", f"sqlite:///{tmp_path / 'g.sqlite3'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[hook] ") >= 3 + 2 + 1 + 1
    assert "user said accept" in r.stdout and "user said box" in r.stdout
    assert "labels recorded: [('accept', 'gallery'), ('box', 'gallery')]" in r.stdout
    assert list(folder.glob("*.xmp"))


def test_curl_examples_cover_every_operation(tmp_path: Path) -> None:
    from clipcrop_plugin.api import Library
    from clipcrop_plugin.config import Settings

    text = (EXAMPLES / "curl.md").read_text()
    with Library.open(f"sqlite:///{tmp_path / 'x.sqlite3'}", settings=Settings()) as lib:
        spec = create_app(lib).openapi()
    for path, item in spec["paths"].items():
        for method in item:
            pattern = re.escape(path).replace(re.escape("{photo_id}"), r"\d+")
            calls = [line for line in text.splitlines() if re.search(pattern + r"(?:[?\s'\"]|$)", line)]
            if method == "get":
                assert calls, f"no curl example for GET {path}"
            else:
                assert any(f"-X {method.upper()}" in c for c in calls), f"no curl example for {method.upper()} {path}"
