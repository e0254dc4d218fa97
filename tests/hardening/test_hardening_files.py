"""Hostile files on disk: FIFOs, devices, symbolic links, read-only and immutable files.

Every entry point (suggest, scan, the daemon, xmp, export, previews, thumbnails, the status file)
opens only regular files, never writes through a link, honours mode bits even for root, and
says so in one line; the hostile file and whatever it points to are left exactly as they were.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from PIL import Image
from support.hardening import (
    XMP_ELSEWHERE,
    assert_one_line_errors,
    copy_photo,
    corpus_jpegs,
    immutable,
    mkfifo,
    run_cli,
    sha,
    tree_state,
)
from support.xmp import make_suggestion, oriented_jpeg

from clipcrop_plugin import safeio
from clipcrop_plugin.errors import ClipcropError, ImageError, MetadataError
from clipcrop_plugin.hashing import content_hash
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.xmp import jpeg as jpegmod
from clipcrop_plugin.xmp import read_crop_metadata, write_crop_metadata

pytestmark = pytest.mark.timeout(120)  # a FIFO that blocks must fail the test, not hang the suite


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    """Three real camera JPEGs in a folder of their own."""
    folder = tmp_path / "lib"
    for i, src in enumerate(corpus_jpegs(3)):
        copy_photo(src, folder / f"p{i}.jpg")
    return folder


@pytest.fixture()
def elsewhere(tmp_path: Path) -> Path:
    """A well-formed XMP file outside the library (what a hostile sidecar link points to)."""
    target = tmp_path / "outside" / "victim.xmp"
    target.parent.mkdir()
    target.write_bytes(XMP_ELSEWHERE)
    return target


# -- case 1: sidecar links ------------------------------------------------------------------------


def test_sidecar_link_to_an_xmp_elsewhere_is_refused_and_both_stay(library: Path, elsewhere: Path) -> None:
    photo = library / "p0.jpg"
    link = library / "p0.xmp"
    link.symlink_to(elsewhere)
    before = sha(elsewhere)
    with pytest.raises(MetadataError, match="symbolic link") as info:
        write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 50)))
    assert "\n" not in str(info.value)
    assert sha(elsewhere) == before and link.is_symlink() and os.readlink(link) == str(elsewhere)


def test_dangling_sidecar_link_never_creates_its_target(library: Path, tmp_path: Path) -> None:
    photo = library / "p0.jpg"
    target = tmp_path / "outside" / "created-by-clipcrop.xmp"
    target.parent.mkdir()
    (library / "p0.xmp").symlink_to(target)
    with pytest.raises(MetadataError, match="symbolic link"):
        write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 50)))
    assert not target.exists() and not list(target.parent.iterdir())


def test_clearing_through_a_sidecar_link_is_refused(library: Path, elsewhere: Path) -> None:
    photo = library / "p1.jpg"
    write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 50)))
    sidecar = library / "p1.xmp"
    elsewhere.write_bytes(sidecar.read_bytes())  # a clipcrop sidecar of this photo, moved away
    sidecar.unlink()
    sidecar.symlink_to(elsewhere)
    before = sha(elsewhere)
    from clipcrop_plugin.xmp import clear_crop_metadata

    with pytest.raises(MetadataError, match="symbolic link"):
        clear_crop_metadata(photo)
    assert sha(elsewhere) == before and sidecar.is_symlink()


def test_every_writer_refuses_sidecar_links_scan_xmp_and_the_daemon(library: Path, elsewhere: Path,
                                                                    tmp_path: Path) -> None:
    dangling = tmp_path / "outside" / "dangling.xmp"
    (library / "p0.xmp").symlink_to(elsewhere)
    (library / "p1.xmp").symlink_to(dangling)
    outside_before = tree_state(elsewhere.parent)
    db = tmp_path / "lib.sqlite3"
    for args in (["scan", str(library), "--scorer", "heuristic", "--xmp", "--db", str(db)],
                 ["xmp", "write", str(library), "--scorer", "heuristic"],
                 ["watch", str(library), "--once", "--scorer", "heuristic", "--db", str(tmp_path / "d.sqlite3")]):
        res = run_cli(*args)
        text = res.stderr + res.stdout
        assert "Traceback" not in text, text
        # scan and xmp name each refused sidecar on one line; the daemon logs it as a warning
        assert text.count("symbolic link") >= 2, (args, text)
        assert tree_state(elsewhere.parent) == outside_before, args
    assert (library / "p2.xmp").is_file()  # the ordinary photo still got its sidecar


# -- case 2: FIFOs and devices ---------------------------------------------------------------------


def test_fifo_named_like_a_photo_does_not_hang_scan_suggest_or_the_daemon(library: Path, tmp_path: Path) -> None:
    mkfifo(library / "photo.jpg")
    start = time.monotonic()
    res = run_cli("scan", str(library), "--scorer", "heuristic", "--db", str(tmp_path / "s.sqlite3"), timeout=60)
    lines = assert_one_line_errors(res.stderr)
    assert res.returncode == 1 and any("photo.jpg" in line and "FIFO" in line for line in lines), res.stderr
    assert "3 scored" in res.stdout  # the batch went on
    res = run_cli("suggest", str(library / "photo.jpg"), str(library / "p0.jpg"), "--scorer", "heuristic", timeout=60)
    assert res.returncode == 1 and "FIFO" in res.stderr and "p0.jpg" in res.stdout
    assert_one_line_errors(res.stderr)
    res = run_cli("watch", str(library), "--once", "--scorer", "heuristic", "--db", str(tmp_path / "w.sqlite3"),
                  timeout=60)
    assert "Traceback" not in res.stderr and "3 scored" in res.stdout, res.stderr
    assert time.monotonic() - start < 100


def test_intake_and_hash_refuse_fifos_and_devices_at_once(tmp_path: Path) -> None:
    fifo = mkfifo(tmp_path / "pipe.jpg")
    for target, kind in ((fifo, "FIFO"), (Path("/dev/zero"), "device"), (tmp_path, "directory")):
        if not target.exists():
            continue
        with pytest.raises(ImageError, match=kind):
            load_image(target)
        if target.is_dir():
            continue
        with pytest.raises(ImageError, match=kind):
            content_hash(target)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
def test_fifo_or_device_sidecar_is_refused_without_reading(library: Path, kind: str) -> None:
    photo = library / "p2.jpg"
    sidecar = library / "p2.xmp"
    if kind == "fifo":
        mkfifo(sidecar)
    else:
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero")
        sidecar.symlink_to("/dev/zero")
    for call in (lambda: write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 50))),
                 lambda: read_crop_metadata(photo), lambda: read_crop_metadata(sidecar)):
        with pytest.raises(MetadataError, match="FIFO|device") as info:
            call()
        assert "\n" not in str(info.value)
    res = run_cli("xmp", "write", str(photo), "--scorer", "heuristic", timeout=60)
    assert res.returncode == 1 and ("FIFO" in res.stderr or "device" in res.stderr)
    assert_one_line_errors(res.stderr)
    assert stat.S_ISFIFO(os.lstat(sidecar).st_mode) if kind == "fifo" else sidecar.is_symlink()


def test_oversized_sidecar_is_refused_before_reading(library: Path) -> None:
    sidecar = library / "p0.xmp"
    with open(sidecar, "wb") as fh:  # sparse: 64 MB on paper, nothing on disk
        fh.truncate(64 << 20)
    with pytest.raises(MetadataError, match="too large"):
        read_crop_metadata(library / "p0.jpg")
    assert sidecar.stat().st_size == 64 << 20


def test_read_regular_bounds_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(10 << 20)
    with pytest.raises(ClipcropError, match="too large"):
        safeio.read_regular(big, 1 << 20)
    assert safeio.read_regular(big, 20 << 20) == b"\0" * (10 << 20)


# -- case 7: mode bits for root, immutable files -------------------------------------------------------


def test_read_only_photo_is_never_embedded_into_even_as_root(tmp_path: Path) -> None:
    photo = oriented_jpeg(tmp_path / "ro.jpg", Image.new("RGB", (300, 200), (90, 30, 30)), 1)
    photo.chmod(0o444)
    before = sha(photo)
    result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
    assert result.mode_used == "sidecar" and "read-only" in (result.note or "")
    assert sha(photo) == before and stat.S_IMODE(photo.stat().st_mode) == 0o444


def test_read_only_sidecar_is_left_alone_even_as_root(library: Path) -> None:
    photo = library / "p0.jpg"
    write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 50)))
    sidecar = library / "p0.xmp"
    sidecar.chmod(0o444)
    before = sha(sidecar)
    with pytest.raises(MetadataError, match="read-only"):
        write_crop_metadata(photo, make_suggestion(photo, (10, 10, 60, 60)))
    assert sha(sidecar) == before


def test_immutable_photo_gets_a_sidecar(tmp_path: Path) -> None:
    photo = oriented_jpeg(tmp_path / "imm.jpg", Image.new("RGB", (300, 200), (30, 90, 30)), 1)
    before = sha(photo)
    with immutable(photo):
        result = write_crop_metadata(photo, make_suggestion(photo), mode="embed")
        assert result.mode_used == "sidecar"
    assert sha(photo) == before


def test_embedding_never_goes_through_a_linked_photo(tmp_path: Path) -> None:
    real = oriented_jpeg(tmp_path / "real.jpg", Image.new("RGB", (300, 200), (30, 30, 90)), 1)
    link = tmp_path / "link.jpg"
    link.symlink_to(real)
    before = sha(real)
    result = write_crop_metadata(link, make_suggestion(link), mode="embed")
    assert result.mode_used == "sidecar" and sha(real) == before and link.is_symlink()
    assert jpegmod.find_xmp(real.read_bytes()) is None


# -- writes of other outputs: export, preview, thumbnails, status --------------------------------------


def test_atomic_write_refuses_links_and_keeps_them(tmp_path: Path, elsewhere: Path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to(elsewhere)
    before = sha(elsewhere)
    for writer in (lambda: safeio.atomic_write(link, b"{}"), lambda: safeio.AtomicFile(link).__enter__()):
        with pytest.raises(MetadataError, match="symbolic link"):
            writer()
    assert sha(elsewhere) == before and link.is_symlink()
    assert not [p for p in tmp_path.iterdir() if safeio.is_temp_name(p.name)]


def test_status_file_and_preview_refuse_links(tmp_path: Path, elsewhere: Path) -> None:
    from clipcrop_plugin.daemon.status import write_status
    from clipcrop_plugin.preview import save_preview

    status = tmp_path / "daemon-status.json"
    status.symlink_to(elsewhere)
    preview = tmp_path / "preview.jpg"
    preview.symlink_to(elsewhere)
    before = sha(elsewhere)
    with pytest.raises(ClipcropError, match="symbolic link"):
        write_status({"pid": 1}, status)
    with pytest.raises(ImageError, match="symbolic link"):
        save_preview(Image.new("RGB", (20, 20)), preview)
    assert sha(elsewhere) == before and status.is_symlink() and preview.is_symlink()
    write_status({"pid": 1}, tmp_path / "fresh.json")
    assert json.loads((tmp_path / "fresh.json").read_text()) == {"pid": 1}


def test_thumbnail_cache_never_writes_through_a_link(tmp_path: Path, elsewhere: Path) -> None:
    from clipcrop_plugin.server.thumbs import ThumbnailCache

    photo = copy_photo(corpus_jpegs(1)[0], tmp_path / "p.jpg")
    cache = ThumbnailCache(tmp_path / "thumbs")
    target = cache.path_for("ab" * 32, 256)
    target.parent.mkdir(parents=True)
    target.symlink_to(tmp_path / "outside" / "planted.jpg")  # dangling: get() does not see it as made
    with pytest.raises(ImageError, match="symbolic link"):
        cache.get(photo, "ab" * 32, 256)
    assert not (tmp_path / "outside" / "planted.jpg").exists() and target.is_symlink()


def test_export_takes_a_free_name_past_a_link_and_files_are_0644(tmp_path: Path, elsewhere: Path) -> None:
    from clipcrop_plugin.export import export_crop

    photo = copy_photo(corpus_jpegs(1)[0], tmp_path / "p.jpg")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p.crop.jpg").symlink_to(elsewhere)
    before = sha(elsewhere)
    old = os.umask(0o022)
    try:
        res = export_crop(photo, (0, 0, 40, 30), out)
    finally:
        os.umask(old)
    assert res.path == out / "p.crop-2.jpg" and sha(elsewhere) == before
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o644
    old = os.umask(0o027)
    try:
        res = export_crop(photo, (0, 0, 40, 30), out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(res.path.stat().st_mode) == 0o640  # the umask is respected


def test_preview_and_sidecar_files_are_created_0644(library: Path) -> None:
    from clipcrop_plugin.preview import save_preview

    old = os.umask(0o022)
    try:
        out = save_preview(Image.new("RGB", (20, 20)), library / "prev" / "x.jpg")
        write_crop_metadata(library / "p0.jpg", make_suggestion(library / "p0.jpg", (0, 0, 50, 50)))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE((library / "p0.xmp").stat().st_mode) == 0o644


def test_export_into_an_immutable_folder_is_one_line_per_photo_and_goes_on(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    for i, src in enumerate(corpus_jpegs(2)):
        copy_photo(src, library / f"p{i}.jpg")
    db = tmp_path / "e.sqlite3"
    assert run_cli("scan", str(library), "--scorer", "heuristic", "--db", str(db)).returncode == 0
    out = tmp_path / "locked"
    out.mkdir()
    with immutable(out):
        res = run_cli("export", "--query", "--out", str(out), "--db", str(db))
    lines = assert_one_line_errors(res.stderr)
    assert res.returncode == 1 and len(lines) == 2 and "0 exported, 2 failed" in res.stderr, res.stderr
    assert all("operation not permitted" in line or "permission denied" in line for line in lines), lines
    assert list(out.iterdir()) == []


def test_daemon_lock_and_active_pin_never_write_through_links(tmp_path: Path, elsewhere: Path) -> None:
    from clipcrop_plugin.daemon.status import LOCK_NAME, DaemonLock
    from clipcrop_plugin.model import build_model, save_checkpoint
    from clipcrop_plugin.model.checkpoints import ACTIVE_FILE, CHECKPOINT_SUBDIR, set_active
    from clipcrop_plugin.model.testing import tiny_config, write_clip_weights
    from clipcrop_plugin.model.weights import load_state_file

    (tmp_path / LOCK_NAME).symlink_to(elsewhere)
    before = sha(elsewhere)
    with pytest.raises(ClipcropError, match="daemon lock"):
        DaemonLock(tmp_path).acquire()
    folder = tmp_path / "models" / CHECKPOINT_SUBDIR
    cfg = tiny_config()
    model = build_model(cfg, load_state_file(write_clip_weights(tmp_path / "c.safetensors", cfg)))
    # A checkpoint that may score (trained head, pretrained trunk), so only the link stands in the way.
    save_checkpoint(model, folder / "mine", provenance={"stage": "cropping", "lineage": ["cropping"],
                                                       "trunk": "pretrained"})
    (folder / ACTIVE_FILE).symlink_to(elsewhere)
    with pytest.raises(ClipcropError, match="symbolic link"):
        set_active(tmp_path / "models", "mine")
    assert sha(elsewhere) == before and (folder / ACTIVE_FILE).is_symlink()


def test_upgrade_backup_never_follows_a_planted_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3
    from datetime import datetime, timezone

    from clipcrop_plugin.store import migrate

    class FixedClock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)

    monkeypatch.setattr(migrate, "datetime", FixedClock)
    db = tmp_path / "lib.sqlite3"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (x)")
    con.close()
    planted = tmp_path / "lib.sqlite3.0001.20260102T030405.bak"
    victim = tmp_path / "outside" / "planted.sqlite3"
    victim.parent.mkdir()
    planted.symlink_to(victim)  # dangling, exactly where the backup would go
    made = migrate.backup_sqlite(db, "0001")
    assert made == tmp_path / "lib.sqlite3.0001.20260102T030405-2.bak"
    assert planted.is_symlink() and not victim.exists()
    assert sqlite3.connect(made).execute("SELECT count(*) FROM t").fetchone() == (0,)
