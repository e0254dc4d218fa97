"""Atomic writes: a killed writer leaves the old or the new file, full disks and read-only folders
give one clear line and leave the old file intact."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import ROOT
from support.xmp import decoded, make_suggestion, oriented_jpeg

from clipcrop_plugin.errors import MetadataError
from clipcrop_plugin.xmp import atomic, clean_stale_temps, is_temp_name, write_crop_metadata

WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
BOXES = [(100, 100, 2000, 1500), (0, 0, 1200, 1200)]

LOOP = textwrap.dedent("""
    import sys
    from datetime import datetime, timezone
    sys.path.insert(0, {tests!r})
    from support.xmp import make_suggestion
    from clipcrop_plugin.xmp import write_crop_metadata
    photo = {photo!r}
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    boxes = {boxes!r}
    i = 0
    print("ready", flush=True)
    while True:
        write_crop_metadata(photo, make_suggestion(photo, tuple(boxes[i % 2])), mode="embed", now=when)
        i += 1
""")


@pytest.fixture()
def big_jpeg(tmp_path: Path) -> Path:
    rng = np.random.default_rng(11)
    small = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    im = Image.fromarray(small).resize((3200, 2400), Image.Resampling.BICUBIC)
    return oriented_jpeg(tmp_path / "big.jpg", im, 6)


def test_killed_embedded_writer_leaves_old_or_new_file(big_jpeg: Path, tmp_path: Path) -> None:
    original = big_jpeg.read_bytes()
    assert len(original) > 2_000_000
    pixels = decoded(original)
    # The states a write loop can leave behind, computed on a scratch copy first.
    scratch = tmp_path / "scratch" / "big.jpg"
    scratch.parent.mkdir()
    scratch.write_bytes(original)
    states = {hashlib.sha256(original).hexdigest()}
    for i in range(4):
        write_crop_metadata(scratch, make_suggestion(scratch, BOXES[i % 2]), mode="embed", now=WHEN)
        states.add(hashlib.sha256(scratch.read_bytes()).hexdigest())
    assert len(states) == 3  # original, box A, box B: rewriting is deterministic

    script = LOOP.format(tests=str(ROOT / "tests"), photo=str(big_jpeg), boxes=BOXES)
    rng = random.Random(5)
    seen = set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(timeout=30)
        data = big_jpeg.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert digest in states, "a killed write left a file that is neither the old nor the new one"
        seen.add(digest)
        assert decoded(data) == pixels
        for name in os.listdir(tmp_path):
            if name.startswith("."):
                assert is_temp_name(name), name  # leftovers are recognisably ours
    assert len(seen - {hashlib.sha256(original).hexdigest()}) >= 1, "the writer never got to finish a write"
    leftovers = [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
    removed = clean_stale_temps(tmp_path, older_than=0)
    assert sorted(removed) == sorted(leftovers)
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]


def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = oriented_jpeg(tmp_path / "full.jpg", Image.new("RGB", (300, 200), (10, 20, 30)), 1)
    write_crop_metadata(photo, make_suggestion(photo))
    sidecar = tmp_path / "full.xmp"
    before_photo, before_sidecar = photo.read_bytes(), sidecar.read_bytes()
    calls = {"n": 0}
    real_write = os.write

    def short_then_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data[:100]))  # a partial write first, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", short_then_full)
    for mode in ("sidecar", "embed"):
        calls["n"] = 0
        with pytest.raises(MetadataError, match="no space left on device") as info:
            write_crop_metadata(photo, make_suggestion(photo, (0, 0, 100, 100)), mode=mode)
        assert "\n" not in str(info.value)
    assert photo.read_bytes() == before_photo and sidecar.read_bytes() == before_sidecar
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]


@pytest.mark.parametrize("err,text", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_read_only_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, text: str) -> None:
    photo = oriented_jpeg(tmp_path / "ro.jpg", Image.new("RGB", (300, 200)), 1)
    before = photo.read_bytes()
    real_open = os.open

    def refuse_create(path, flags, *args, **kwargs):  # noqa: ANN001 - mirrors os.open
        if flags & os.O_CREAT:
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", refuse_create)
    with pytest.raises(MetadataError, match=text):
        write_crop_metadata(photo, make_suggestion(photo))
    with pytest.raises(MetadataError, match=text):
        write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert photo.read_bytes() == before and not (tmp_path / "ro.xmp").exists()


def test_real_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    photo = oriented_jpeg(folder / "p.jpg", Image.new("RGB", (300, 200)), 1)
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as root: folder permissions are not enforced")
        with pytest.raises(MetadataError, match="permission denied"):
            write_crop_metadata(photo, make_suggestion(photo))
    finally:
        folder.chmod(0o755)


def test_stale_temp_cleanup_respects_age_and_target(tmp_path: Path) -> None:
    old = tmp_path / ".a.jpg.clipcrop-tmp-0000"
    new = tmp_path / ".b.jpg.clipcrop-tmp-1111"
    other = tmp_path / ".hidden"
    for p in (old, new, other):
        p.write_bytes(b"x")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert clean_stale_temps(tmp_path, older_than=600) == [old]
    assert clean_stale_temps(tmp_path, older_than=0, target="a.jpg") == []
    assert new.exists() and other.exists()
    assert not is_temp_name(".hidden") and is_temp_name(new.name)


def test_deferred_folder_sync_still_renames_each_file_at_once(tmp_path: Path) -> None:
    photos = [oriented_jpeg(tmp_path / f"d{i}.jpg", Image.new("RGB", (300, 200)), 1) for i in range(3)]
    with atomic.deferred_dir_sync() as pending:
        for p in photos:
            write_crop_metadata(p, make_suggestion(p))
            assert p.with_suffix(".xmp").exists()  # visible immediately, not at the end
        assert pending == {tmp_path}
