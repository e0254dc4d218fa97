"""Fuzzing the two doors hostile bytes come through: intake (photos) and the XMP reader (sidecars).

Seeds are real files: the camera corpus and sidecars clipcrop wrote for them. Each example is
truncated, bit-flipped, spliced or given hostile XML (entities, external references). Whatever
comes out: a typed clipcrop error with one line, or a result - never another exception, never a
hang (per-test timeout, per-example clock), never a write outside the temp library.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hardening import XMP_ELSEWHERE, corpus, tree_state
from support.xmp import make_suggestion

from clipcrop_plugin.errors import ImageError, MetadataError
from clipcrop_plugin.hashing import content_hash
from clipcrop_plugin.imaging import load_image
from clipcrop_plugin.xmp import clear_crop_metadata, read_crop_metadata, write_crop_metadata

pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")]
EXAMPLE_SECONDS = 30.0  # far above a normal decode, even on a loaded machine: a hang shows up

HOSTILE_XML = (
    b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>',
    b'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    b"&d;", b"&xxe;", b"<![CDATA[", b"\x00", b"\xff\xfe", b"<rdf:li>", b"</x:xmpmeta>",
)


def _seed_photos() -> list[bytes]:
    root = corpus()
    files = [p for p in sorted(root.glob("jpg/*.jpg")) + sorted(root.glob("jpg/invalid/*.jpg"))
             + sorted(root.glob("tiff/*.tif*")) + sorted(root.glob("heic/*.heif")) if p.stat().st_size < 100_000]
    return [p.read_bytes() for p in files]


def _mutate(data: bytes, cut: float, flips: list[tuple[float, int]], splice: tuple[float, bytes] | None) -> bytes:
    out = bytearray(data[: max(1, int(len(data) * cut))])
    for where, value in flips:
        out[int(where * (len(out) - 1))] = value
    if splice is not None:
        at = int(splice[0] * len(out))
        out[at:at] = splice[1]
    return bytes(out)


mutations = st.tuples(
    st.floats(0.02, 1.0),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6),
    st.none() | st.tuples(st.floats(0, 1), st.sampled_from(HOSTILE_XML) | st.binary(max_size=64)),
)


class Sandbox:
    """A temp library plus a sentinel folder next to it: nothing outside the library may change."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="clipcrop-fuzz-")
        self.root = Path(self._tmp.name)
        self.library = self.root / "library"
        self.outside = self.root / "outside"
        self.library.mkdir()
        self.outside.mkdir()
        (self.outside / "victim.xmp").write_bytes(XMP_ELSEWHERE)
        self.before = tree_state(self.outside)

    def check_and_close(self, allowed: set[str]) -> None:
        try:
            assert tree_state(self.outside) == self.before, "a write outside the library"
            assert {p.name for p in self.root.iterdir()} == {"library", "outside"}, "a file next to the library"
            stray = {p.name for p in self.library.iterdir()} - allowed
            assert not stray, f"unexpected files in the library: {stray}"
        finally:
            self._tmp.cleanup()


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    return _seed_photos()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(index=st.integers(0, 10_000), mutation=mutations)
def test_intake_of_damaged_real_photos(seeds: list[bytes], index: int, mutation: tuple) -> None:
    box = Sandbox()
    try:
        photo = box.library / "photo.jpg"
        photo.write_bytes(_mutate(seeds[index % len(seeds)], *mutation))
        start = time.monotonic()
        try:
            loaded = load_image(photo, min_side=128)
            assert loaded.image.mode == "RGB" and min(loaded.image.size) > 0
        except ImageError as exc:
            assert "\n" not in str(exc) and str(exc)
        assert len(content_hash(photo)) == 64
        assert time.monotonic() - start < EXAMPLE_SECONDS
    finally:
        box.check_and_close({"photo.jpg"})


def _sidecar_seed() -> bytes:
    """A real sidecar: what clipcrop writes for a corpus photo, merged into another tool's packet."""
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "seed.jpg"
        photo.write_bytes(sorted((corpus() / "jpg").glob("Canon_40D.jpg"))[0].read_bytes())
        (Path(tmp) / "seed.jpg.xmp").write_bytes(XMP_ELSEWHERE)
        write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 40)))
        return (Path(tmp) / "seed.jpg.xmp").read_bytes()


@pytest.fixture(scope="module")
def sidecar_seed() -> bytes:
    return _sidecar_seed()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(mutation=mutations, action=st.sampled_from(["read", "write", "clear"]))
def test_xmp_reader_and_writer_on_damaged_sidecars(sidecar_seed: bytes, mutation: tuple, action: str) -> None:
    box = Sandbox()
    try:
        photo = box.library / "p.jpg"
        photo.write_bytes((corpus() / "jpg" / "Canon_40D.jpg").read_bytes())
        photo_before = photo.read_bytes()
        sidecar = box.library / "p.xmp"
        damaged = _mutate(sidecar_seed, *mutation)
        sidecar.write_bytes(damaged)
        start = time.monotonic()
        try:
            if action == "read":
                read_crop_metadata(photo)
            elif action == "write":
                write_crop_metadata(photo, make_suggestion(photo, (0, 0, 50, 40)))
            else:
                clear_crop_metadata(photo)
        except MetadataError as exc:
            assert "\n" not in str(exc) and str(exc)
            assert sidecar.read_bytes() == damaged, "a refused sidecar was changed"
        assert time.monotonic() - start < EXAMPLE_SECONDS
        assert photo.read_bytes() == photo_before
        assert b"root:" not in (sidecar.read_bytes() if sidecar.exists() else b""), "an external entity was expanded"
    finally:
        box.check_and_close({"p.jpg", "p.xmp"})
