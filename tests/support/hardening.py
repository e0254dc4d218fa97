"""Helpers of the hardening tests: hostile files (FIFOs, links, immutable files) and CLI runs.

Imported by the ``test_hardening_*`` modules; it holds no tests of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import ROOT

CLIPCROP = str(Path(sys.executable).with_name("clipcrop"))
XMP_ELSEWHERE = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:format>image/jpeg</dc:format>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>\n"
    b'<?xpacket end="w"?>'
)


def corpus() -> Path:
    """The real-camera corpus (``../shared/corpus/exif-samples`` or ``$CLIPCROP_CORPUS``), else skip."""
    for candidate in (ROOT.parent / "shared" / "corpus" / "exif-samples", Path(os.environ.get("CLIPCROP_CORPUS", ""))):
        if str(candidate) and candidate.is_dir() and any(candidate.glob("jpg/*.jpg")):
            return candidate
    pytest.skip("EXIF sample corpus not found (../shared/corpus/exif-samples or $CLIPCROP_CORPUS)")


def corpus_jpegs(n: int | None = None) -> list[Path]:
    """Real camera JPEGs of the corpus (the first ``n``), known-good ones only."""
    files = sorted(p for p in (corpus() / "jpg").glob("*.jpg") if "corrupt" not in p.name)
    return files[:n] if n else files


def copy_photo(src: Path, dst: Path) -> Path:
    """Copy a corpus file (the corpus is read-only; the copy is an ordinary 0644 file)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    dst.chmod(0o644)
    return dst


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_state(root: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``root`` without following links: (kind, link target or content hash)."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", "")
            elif p.is_file():
                out[rel] = ("file", sha(p))
            else:
                out[rel] = ("special", oct(p.lstat().st_mode))
    return out


def mkfifo(path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("this platform has no FIFOs")
    os.mkfifo(path)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed ``clipcrop`` with this checkout first on the path; a hang fails the test."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([CLIPCROP, *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=str(ROOT))


class Ran:
    """What a command left: exit status, stdout, stderr (the shape of ``subprocess.run``'s result)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run ``clipcrop ARGS`` in this process (fast); an exception escaping the command fails the test."""
    from click.testing import CliRunner

    from clipcrop_plugin.cli.main import cli

    res = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return Ran(res.exit_code, res.stdout, res.stderr)


def assert_one_line_errors(stderr: str) -> list[str]:
    """No traceback; every error is one ``error:``/``failed:`` line. Returns the error lines."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(("error:", "failed:", "xmp not written:"))]


def _chattr(flag: str, path: Path) -> bool:
    exe = shutil.which("chattr")
    if exe is None:
        return False
    return subprocess.run([exe, flag, str(path)], capture_output=True).returncode == 0


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i`` for the block (nobody, root included, may change or replace it); else skip."""
    if not _chattr("+i", path):
        pytest.skip("chattr +i is not available here (needs root and an ext4/xfs/btrfs file system)")
    try:
        yield
    finally:
        _chattr("-i", path)
