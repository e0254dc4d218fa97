"""``clipcrop models fetch`` against a loopback server that speaks the Hub's file-download protocol.

The server answers ``HEAD``/``GET /{repo}/resolve/{revision}/{file}`` with ``ETag`` (the file's
sha256, as the Hub does for LFS files), ``X-Repo-Commit`` and ``Content-Length``, and serves a
random-init RN50 state dict this test saved. ``HF_ENDPOINT`` points huggingface_hub at it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from clipcrop_plugin.config import Settings
from clipcrop_plugin.errors import WeightsError
from clipcrop_plugin.model import build_model, save_checkpoint
from clipcrop_plugin.model.checkpoints import import_and_pin
from clipcrop_plugin.model.config import pretrained_model_config
from clipcrop_plugin.model.fetch import fetch_weights, read_records
from clipcrop_plugin.model.weights import find_clip_weights

REPO = "timm/resnet50_clip.openai"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def rn50_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init RN50 (the real architecture, no pretrained values), saved as open_clip does."""
    from safetensors.torch import save_file

    from clipcrop_plugin.model.network import create_clip

    torch.manual_seed(0)
    clip = create_clip(pretrained_model_config("RN50", "openai"))
    path = tmp_path_factory.mktemp("hubfiles") / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(path))
    return path


class _Hub(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    requests: list[tuple[str, str]] = []
    refuse = False
    lie_about_sha = False

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _route(self) -> bytes | None:
        self.requests.append((self.command, self.path))
        prefix = f"/{REPO}/resolve/"
        if not self.path.startswith(prefix):
            return None
        revision, _, name = self.path[len(prefix):].partition("/")
        if revision not in ("main", COMMIT):
            return None
        return self.files.get(name)

    def _headers(self, body: bytes) -> None:
        sha = hashlib.sha256(body if not self.lie_about_sha else body + b"x").hexdigest()
        self.send_response(200)
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()

    def _missing(self) -> None:
        code = 403 if self.refuse else 404
        self.send_response(code)
        self.send_header("X-Error-Code", "EntryNotFound" if code == 404 else "GatedRepo")
        self.send_header("X-Error-Message", "no such file" if code == 404 else "access refused")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        body = None if self.refuse else self._route()
        self._missing() if body is None else self._headers(body)

    def do_GET(self) -> None:  # noqa: N802
        body = None if self.refuse else self._route()
        if body is None:
            self._missing()
            return
        self._headers(body)
        self.wfile.write(body)


@pytest.fixture()
def hub(rn50_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Hub]]:
    handler = type("Hub", (_Hub,), {"files": {"open_clip_model.safetensors": rn50_file.read_bytes()}, "requests": [],
                                    "refuse": False, "lie_about_sha": False})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_downloads_verifies_and_registers(hub: type[_Hub], rn50_file: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    rec = fetch_weights(model_dir, "RN50", "openai", progress=False)
    expected = hashlib.sha256(rn50_file.read_bytes()).hexdigest()
    assert rec.sha256 == expected and rec.repo == REPO and rec.revision == COMMIT
    assert Path(rec.path).is_file() and str(tmp_path / "hf" / "hub") in rec.path  # huggingface_hub's own cache
    assert ("HEAD", f"/{REPO}/resolve/main/open_clip_model.safetensors") in hub.requests
    assert read_records(model_dir)["RN50-openai"].sha256 == expected
    where = find_clip_weights(model_dir, "RN50", "openai")
    assert where.source == "fetched" and where.path == Path(rec.path)
    # a second fetch is served from the cache: no second GET of the file
    gets = sum(1 for m, _ in hub.requests if m == "GET")
    assert fetch_weights(model_dir, "RN50", "openai", progress=False).sha256 == expected
    assert sum(1 for m, _ in hub.requests if m == "GET") == gets


def test_refused_download_is_one_line_and_writes_nothing(hub: type[_Hub], tmp_path: Path) -> None:
    hub.refuse = True
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsError) as exc:
        fetch_weights(model_dir, "RN50", "openai", progress=False)
    msg = str(exc.value)
    assert "\n" not in msg and "RN50-openai.safetensors" in msg and REPO in msg and "--weights" in msg
    assert not (model_dir / "fetched.json").exists()
    blobs = list((tmp_path / "hf" / "hub").rglob("blobs/*"))
    assert blobs == []


def test_hash_mismatch_removes_the_download(hub: type[_Hub], tmp_path: Path) -> None:
    hub.lie_about_sha = True
    with pytest.raises(WeightsError, match="sha256"):
        fetch_weights(tmp_path / "models", "RN50", "openai", progress=False)
    assert not (tmp_path / "models" / "fetched.json").exists()
    assert [p for p in (tmp_path / "hf" / "hub").rglob("blobs/*") if p.is_file()] == []


def test_offline_says_what_to_copy(hub: type[_Hub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE") as exc:
        fetch_weights(tmp_path / "models", "RN50", "openai", progress=False)
    assert "open_clip_model.safetensors" in str(exc.value)
    assert hub.requests == []


@pytest.mark.slow  # two real-size RN50 zeroshot scorers
def test_cli_fetch_then_models_and_auto(hub: type[_Hub], tmp_path: Path) -> None:
    """After `models fetch`, `clipcrop models` shows zeroshot ready from the fetched file and
    `auto` picks zeroshot, passing over an imported stage-1 checkpoint with one line why."""
    from clipcrop_plugin.cli.main import cli
    from clipcrop_plugin.scoring.registry import load_scorer

    model_dir = tmp_path / "models"
    env = {"CLIPCROP_MODEL_DIR": str(model_dir)}
    Path(os.environ["CLIPCROP_CONFIG"]).write_text("")
    runner = CliRunner()
    out = runner.invoke(cli, ["models", "fetch", "--quiet"], env=env)
    assert out.exit_code == 0, out.output
    assert "sha256" in out.output and REPO in out.output
    rows = {r["name"]: r for r in json.loads(runner.invoke(cli, ["models", "--json"], env=env).output)["scorers"]}
    assert rows["zeroshot"]["ready"] and "from fetched" in rows["zeroshot"]["detail"]
    assert rows["zeroshot"]["sha256"] == read_records(model_dir)["RN50-openai"].sha256

    # A stage-1 checkpoint (its cropping head never trained) is imported with a warning, never pinned.
    from clipcrop_plugin.model.testing import tiny_config

    stage1 = save_checkpoint(build_model(tiny_config()), tmp_path / "s1" / "composition-s1",
                             provenance={"stage": "composition", "lineage": ["composition"], "trunk": "pretrained"})
    result = import_and_pin(stage1.path, model_dir)
    assert result.refusal and "never trained" in result.refusal and not result.activated
    out = runner.invoke(cli, ["models", "import", str(stage1.path)], env=env)
    assert out.exit_code == 0 and "cannot score photos" in out.output
    rows = {r["name"]: r for r in json.loads(runner.invoke(cli, ["models", "--json"], env=env).output)["scorers"]}
    assert not rows["clipcropping"]["ready"]

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("clipcrop")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        settings = Settings(model_dir=str(model_dir))
        scorer = load_scorer("auto", settings=settings, device="cpu")
        # the stage-1 file is pinned by hand (as an older clipcrop did by "newest wins"): auto still skips it
        (model_dir / "checkpoints" / "ACTIVE").write_text(stage1.path.name + "\n")
        scorer2 = load_scorer("auto", settings=settings, device="cpu")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert scorer.name == "zeroshot" and scorer.weights_hash == read_records(model_dir)["RN50-openai"].sha256
    assert scorer2.name == "zeroshot"
    skips = [r.getMessage() for r in records if "skipping clipcropping" in r.getMessage()]
    assert len(skips) == 1 and "never trained" in skips[0] and "\n" not in skips[0]
    out = runner.invoke(cli, ["suggest", str(_photo(tmp_path)), "--scorer", "clipcropping", "--device", "cpu"], env=env)
    assert out.exit_code != 0 and "never trained" in out.output and "Traceback" not in out.output
    assert len([ln for ln in out.output.splitlines() if ln.strip()]) == 1


def test_cli_fetch_offline_exit_code(hub: type[_Hub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipcrop_plugin.cli.main import cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = CliRunner().invoke(cli, ["models", "fetch", "--quiet"], env={"CLIPCROP_MODEL_DIR": str(tmp_path / "m")})
    assert out.exit_code != 0 and out.output.startswith("error: ") and len(out.output.strip().splitlines()) == 1


def _photo(tmp_path: Path) -> Path:
    import numpy as np
    from PIL import Image

    path = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path
