"""One line per failure from every command: errors handled once, warnings kept out, names escaped."""

from __future__ import annotations

import io
import json
import shutil
import struct
import time
from pathlib import Path

import pytest
from PIL import Image
from support.hardening import assert_one_line_errors, copy_photo, corpus_jpegs, invoke, run_cli

pytestmark = pytest.mark.timeout(300)


def _warning_tiff(path: Path) -> Path:
    """A TIFF whose ImageDescription claims more bytes than the file has: Pillow warns, then reads it."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (100, 50, 20)).save(buf, "TIFF", tiffinfo={270: "desc"})
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack("<H", data[entry:entry + 2])[0] == 270:
            data[entry + 4:entry + 8] = struct.pack("<I", 10**6)
    path.write_bytes(bytes(data))
    return path


def test_unexpected_exception_is_one_line_with_a_debug_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipcrop_plugin.store import Store

    def broken(self: object, *args: object, **kwargs: object) -> object:
        raise RuntimeError("index out of whack\nsecond line of a long story")

    db = str(tmp_path / "x.sqlite3")
    Store.open(db).close()
    monkeypatch.setattr(Store, "query", broken)
    res = invoke("query", "--db", db)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.strip() == ("error: unexpected RuntimeError: index out of whack second line of a long story"
                                  " (run with --debug for the traceback)")
    with pytest.raises(RuntimeError, match="out of whack"):
        invoke("--debug", "query", "--db", db)
    with pytest.raises(RuntimeError, match="out of whack"):
        invoke("query", "--db", db, env={"CLIPCROP_DEBUG": "1"})


def test_clipcrop_errors_keep_their_exit_codes(tmp_path: Path) -> None:
    res = invoke("models", "use", "nope")
    assert res.returncode == 1 and res.stderr.startswith("error: checkpoint not found")
    res = invoke("query", "--db", str(tmp_path))  # a folder: StoreError
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "is a directory" in res.stderr


def test_pillow_warnings_stay_out_of_the_output(tmp_path: Path) -> None:
    tif = _warning_tiff(tmp_path / "odd.tif")
    res = run_cli("suggest", str(tif), "--scorer", "heuristic", "--top", "1")
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "warnings.warn" not in res.stderr, res.stderr
    assert res.stderr == "" and "1 photo(s), 1 ok, 0 failed" in res.stdout
    verbose = run_cli("-v", "suggest", str(tif), "--scorer", "heuristic", "--top", "1")
    assert "INFO clipcrop.warnings: UserWarning: Tag data larger than file" in verbose.stderr
    debug = run_cli("--debug", "suggest", str(tif), "--scorer", "heuristic", "--top", "1")
    assert "UserWarning: Tag data larger than file" in debug.stderr


def test_models_import_of_an_absurd_config_is_one_line_before_allocating(tmp_path: Path) -> None:
    from clipcrop_plugin.model import build_model, save_checkpoint
    from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
    from clipcrop_plugin.model.weights import load_state_file

    cfg = tiny_config()
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg)))
    info = save_checkpoint(model, tmp_path / "export" / "trained")
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copyfile(info.path, bad / "trained.safetensors")
    side = json.loads(info.sidecar.read_text())
    side["config"]["head_hidden"] = [400_000, 400_000]  # 160 G parameters: 640 GB to allocate
    (bad / "trained.json").write_text(json.dumps(side))
    env = {"CLIPCROP_MODEL_DIR": str(tmp_path / "models")}
    start = time.monotonic()
    res = invoke("models", "import", str(bad / "trained.safetensors"), env=env)
    assert res.returncode == 1 and assert_one_line_errors(res.stderr) == [res.stderr.strip()]
    assert "GB of tensors but the file holds" in res.stderr and time.monotonic() - start < 60
    assert not (tmp_path / "models" / "checkpoints" / "trained.safetensors").exists()
    good = invoke("models", "import", str(info.path), env=env)
    assert good.returncode == 0, good.stderr


def test_a_newline_in_a_file_name_never_splits_a_line(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    copy_photo(corpus_jpegs(1)[0], folder / "evil\nname.jpg")
    (folder / "bad\none.jpg").write_bytes(b"not a photo")
    res = invoke("suggest", str(folder), "--scorer", "heuristic", "--top", "1")
    assert res.returncode == 1
    heads = [line for line in res.stdout.splitlines() if not line.startswith(" ")]
    assert heads == [f"{folder}/evil\\nname.jpg  {heads[0].split('  ', 1)[1]}"] if heads else False, res.stdout
    assert [line for line in res.stderr.splitlines() if "bad" in line] == [
        f"error: {folder}/bad\\none.jpg: not an image or an unsupported format"]
    db = str(tmp_path / "n.sqlite3")
    res = invoke("scan", str(folder), "--scorer", "heuristic", "--db", db)
    assert f"failed: {folder}/bad\\none.jpg: not an image or an unsupported format" in res.stderr.splitlines()
    res = invoke("query", "--db", db)
    assert res.stdout.splitlines()[-1].endswith("evil\\nname.jpg")
    res = invoke("xmp", "write", str(folder), "--scorer", "heuristic", env={"CLIPCROP_DB": db})
    out = res.stdout.splitlines()
    assert out == [f"{folder}/evil\\nname.jpg -> {folder}/evil\\nname.xmp (sidecar, from the database)"] or (
        len(out) == 1 and out[0].startswith(f"{folder}/evil\\nname.jpg -> ")), out
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad\\none.jpg" in errors[0]
