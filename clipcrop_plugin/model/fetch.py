"""``clipcrop models fetch``: download pretrained open_clip weights and register them.

The file is found through open_clip's own pretrained registry (``get_pretrained_cfg`` names the
Hugging Face repository) and downloaded by ``huggingface_hub`` into its cache, so the cache,
``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and proxy variables work as they do for any
other Hub download. After the download the sha256 of the file is checked against the Hub's ETag
(which is the sha256 of a Git LFS file) and recorded in ``<model_dir>/fetched.json``, where
:func:`clipcrop_plugin.model.weights.find_clip_weights` looks first after an explicit path.

A failure (offline, refused, wrong hash) is one :class:`~clipcrop_plugin.errors.WeightsError`
line that says how to place the file by hand; no record is written and a file that failed
verification is removed from the cache.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import WeightsError
from .weights import HF_FILES, sha256_file

RECORD_FILE = "fetched.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FetchedWeights:
    """One registered download: which tower, where the file is, and its verified sha256."""

    model: str
    pretrained: str
    path: str
    sha256: str
    size: int
    repo: str
    filename: str
    revision: str
    endpoint: str
    fetched: str

    @property
    def key(self) -> str:
        return f"{self.model}-{self.pretrained}"


def record_path(model_dir: Path) -> Path:
    return Path(model_dir) / RECORD_FILE


def read_records(model_dir: Path) -> dict[str, FetchedWeights]:
    """The registered downloads of a model folder (an unreadable record counts as none)."""
    try:
        data = json.loads(record_path(model_dir).read_text(encoding="utf-8"))
        return {k: FetchedWeights(**v) for k, v in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def registered_weights(model_dir: Path, name: str, pretrained: str) -> Path | None:
    """The fetched file for this tower when it is still there with the size it was verified at."""
    rec = read_records(model_dir).get(f"{name}-{pretrained}")
    if rec is None:
        return None
    path = Path(rec.path)
    try:
        if path.is_file() and path.stat().st_size == rec.size:
            return path
    except OSError:
        pass
    return None


def _write_record(model_dir: Path, rec: FetchedWeights) -> None:
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    records = {k: asdict(v) for k, v in read_records(folder).items()}
    records[rec.key] = asdict(rec)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".fetched.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(records, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, record_path(folder))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def hub_repo(name: str, pretrained: str) -> str:
    """The Hugging Face repository open_clip's registry names for ``name``/``pretrained``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    repo = str(cfg.get("hf_hub") or "").strip("/")
    if not repo:
        known = ", ".join(t for t in open_clip.list_pretrained_tags_by_model(name)) if name in open_clip.list_models() else ""
        raise WeightsError(f"open_clip has no Hugging Face download for {name} ({pretrained})"
                           + (f"; its tags: {known}" if known else f"; open_clip knows no model named {name!r}"))
    return repo


def _by_hand(name: str, pretrained: str, repo: str, model_dir: Path) -> str:
    return (f"copy {HF_FILES[0]} from https://huggingface.co/{repo} into {model_dir} as {name}-{pretrained}.safetensors "
            f"(or as {model_dir / name / HF_FILES[0]}), or pass --weights PATH")


def _cache_dir() -> str:
    # huggingface_hub reads HF_HOME/HF_HUB_CACHE once at import; a caller (or a test) may have
    # set them since, so they are read again here.
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as the environment says now.

    huggingface_hub reads it once at import; this call follows the environment of the moment.
    """
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def _incomplete(cache: str, repo: str) -> set[Path]:
    blobs = Path(cache) / f"models--{repo.replace('/', '--')}" / "blobs"
    return set(blobs.glob("*.incomplete")) if blobs.is_dir() else set()


def _expected_sha256(repo: str, filename: str, revision: str, endpoint: str | None) -> tuple[str | None, str]:
    """The Hub's ETag of the file (sha256 for LFS files) and the commit it resolves to."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision, endpoint=endpoint))
    etag = (meta.etag or "").strip('"').lower()
    return (etag if _SHA256.match(etag) else None), str(meta.commit_hash or revision)


def fetch_weights(model_dir: Path, name: str = "RN50", pretrained: str = "openai", *, revision: str = "main",
                  progress: bool = True) -> FetchedWeights:
    """Download (or reuse from the Hub cache), verify and register open_clip weights.

    Tries ``open_clip_model.safetensors`` first, then ``open_clip_pytorch_model.bin``. Returns the
    record written to ``<model_dir>/fetched.json``; raises WeightsError with what to do instead.
    """
    from huggingface_hub import constants

    repo = hub_repo(name, pretrained)
    model_dir = Path(model_dir)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    cache = _cache_dir()
    offline = _offline()
    # huggingface_hub's sessions refuse every request when its import-time flag is set: follow
    # the environment as it is now for this call, and put the flag back afterwards.
    saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, offline
    try:
        return _fetch(repo, model_dir, name, pretrained, revision, endpoint, cache, offline, progress)
    finally:
        constants.HF_HUB_OFFLINE = saved


def _fetch(repo: str, model_dir: Path, name: str, pretrained: str, revision: str, endpoint: str | None, cache: str,
           offline: bool, progress: bool) -> FetchedWeights:
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    before = _incomplete(cache, repo)
    last: Exception | None = None
    remote_missing = getattr(hf_errors, "RemoteEntryNotFoundError", hf_errors.EntryNotFoundError)
    kwargs: dict[str, Any] = {}
    if "tqdm_class" in inspect.signature(huggingface_hub.hf_hub_download).parameters:
        kwargs["tqdm_class"] = None if progress else _silent()
    for filename in HF_FILES:
        try:
            expected, commit = (None, revision) if offline else _expected_sha256(repo, filename, revision, endpoint)
            path = Path(huggingface_hub.hf_hub_download(
                repo, filename, revision=revision, cache_dir=cache, endpoint=endpoint, local_files_only=offline,
                library_name="clipcrop", **kwargs))
        except hf_errors.LocalEntryNotFoundError as exc:
            last = exc
            if offline:
                continue  # not in the cache under this name: try the next one
            _clean_partial(cache, repo, before)
            raise WeightsError(f"cannot download {name} ({pretrained}) weights from "
                               f"{endpoint or 'https://huggingface.co'}/{repo}: {_reason(exc)}; "
                               + _by_hand(name, pretrained, repo, model_dir)) from None
        except remote_missing as exc:  # 404: the repository has no file of this name
            last = exc
            continue
        except Exception as exc:  # httpx, OS and Hub errors alike: every one means "not downloaded"
            _clean_partial(cache, repo, before)
            raise WeightsError(f"cannot download {name} ({pretrained}) weights from "
                               f"{endpoint or 'https://huggingface.co'}/{repo}: {_reason(exc)}; "
                               + _by_hand(name, pretrained, repo, model_dir)) from None
        digest = sha256_file(path)
        if expected is not None and digest != expected:
            _drop_from_cache(path)
            raise WeightsError(f"downloaded {filename} from {repo} has sha256 {digest[:12]}, the Hub says "
                               f"{expected[:12]}; removed it from the cache, try again or "
                               + _by_hand(name, pretrained, repo, model_dir))
        _check_loadable(path, name, pretrained)
        rec = FetchedWeights(model=name, pretrained=pretrained, path=str(path), sha256=digest, size=path.stat().st_size,
                             repo=repo, filename=filename, revision=commit, endpoint=endpoint or "https://huggingface.co",
                             fetched=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        _write_record(model_dir, rec)
        return rec
    _clean_partial(cache, repo, before)
    how = "HF_HUB_OFFLINE is set and the Hub cache does not hold them" if offline else f"{repo} holds neither {' nor '.join(HF_FILES)}"
    raise WeightsError(f"cannot fetch {name} ({pretrained}) weights: {how}; " + _by_hand(name, pretrained, repo, model_dir)
                       ) from last


def _check_loadable(path: Path, name: str, pretrained: str) -> None:
    """Refuse a download that is not a plain state dict for this tower (it is kept in the cache)."""
    from .weights import check_clip_weights

    check_clip_weights(path, name, pretrained)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def _clean_partial(cache: str, repo: str, before: set[Path]) -> None:
    """Remove the partial downloads this call left (resumable pieces from earlier calls stay)."""
    for part in _incomplete(cache, repo) - before:
        try:
            part.unlink()
        except OSError:
            pass


def _drop_from_cache(path: Path) -> None:
    """Remove a snapshot entry and the blob it points at."""
    try:
        blob = path.resolve()
        path.unlink()
        if blob != path and blob.is_file():
            blob.unlink()
    except OSError:
        pass


def _silent() -> type:
    """A tqdm class that draws nothing (``--json`` output)."""
    from tqdm.auto import tqdm

    class Silent(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent
