"""Finding and loading pretrained CLIP weights without ever unpickling code.

Order (SPEC 5): an explicit path (``--weights`` / ``settings.weights``), the configured model
folder, a file registered by ``clipcrop models fetch`` (``<model_dir>/fetched.json``), then
open_clip's own download cache. Nothing here downloads: a missing file is a
:class:`~clipcrop_plugin.errors.WeightsError` that says how to fetch or place one.

Names looked for in the model folder (``settings.resolved_model_dir()``), first match wins:
``<model>-<pretrained>.safetensors``, ``<model>-<pretrained>.bin``, ``<model>-<pretrained>.pt``
(e.g. ``RN50-openai.safetensors``), then ``<model>/open_clip_model.safetensors`` and
``<model>/open_clip_pytorch_model.bin`` (a Hugging Face snapshot of ``timm/resnet50_clip.openai``
copied into a folder named after the model), then the same two names directly in the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # torch is imported only where tensors are made: finding weights must stay cheap
    import torch

from ..errors import WeightsError

HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

HOW_TO_GET = ("run `clipcrop models fetch {name} --pretrained {pretrained}`, or put an open_clip state dict "
              "(e.g. open_clip_model.safetensors from the Hugging Face repo timm/resnet50_clip.openai) in {model_dir} "
              "as {name}-{pretrained}.safetensors, or pass --weights PATH")


@dataclass(frozen=True)
class ClipWeights:
    """Where a CLIP state dict was found: ``path``, ``source`` (explicit|model_dir|fetched|open_clip_cache)."""

    path: Path
    source: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def model_dir_candidates(model_dir: Path, name: str, pretrained: str) -> list[Path]:
    """The file names searched in the model folder, in order."""
    stem = f"{name}-{pretrained}"
    names = [model_dir / f"{stem}{ext}" for ext in (".safetensors", ".bin", ".pt")]
    names += [model_dir / name / f for f in HF_FILES]
    names += [model_dir / f for f in HF_FILES]
    return names


def open_clip_cache_candidates(name: str, pretrained: str) -> list[Path]:
    """Files open_clip would have downloaded for this tower, if they are in the local HF cache."""
    try:
        from huggingface_hub import constants, try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of open_clip
        return []
    # Importing open_clip costs seconds (it imports torch); only pay for it when the local
    # cache holds some CLIP repository at all.
    cache = Path(constants.HF_HUB_CACHE)
    if not cache.is_dir() or not any("clip" in p.name.lower() for p in cache.glob("models--*")):
        return []
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, pretrained) or {}
    repo = (cfg.get("hf_hub") or "").strip("/")
    found = []
    if repo:
        for fname in HF_FILES:
            try:
                hit = try_to_load_from_cache(repo, fname)
            except Exception:  # a malformed cache is the same as no cache
                hit = None
            if isinstance(hit, str) and os.path.isfile(hit):
                found.append(Path(hit))
    return found


def find_clip_weights(model_dir: Path, name: str = "RN50", pretrained: str = "openai",
                      explicit: str | os.PathLike[str] | None = None) -> ClipWeights:
    """Locate CLIP weights (explicit path, model folder, open_clip cache) or raise WeightsError."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return ClipWeights(path, "explicit")
    for path in model_dir_candidates(Path(model_dir), name, pretrained):
        if path.is_file():
            return ClipWeights(path, "model_dir")
    from .fetch import registered_weights

    fetched = registered_weights(Path(model_dir), name, pretrained)
    if fetched is not None:
        return ClipWeights(fetched, "fetched")
    for path in open_clip_cache_candidates(name, pretrained):
        return ClipWeights(path, "open_clip_cache")
    raise WeightsError(f"no {name} ({pretrained}) CLIP weights found; "
                       + HOW_TO_GET.format(model_dir=model_dir, name=name, pretrained=pretrained))


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file, or of a .pt/.bin through ``torch.load(weights_only=True)``.

    A pickle that needs code to load (a full pickled model, a TorchScript archive such as
    OpenAI's original RN50.pt) is refused rather than executed.
    """
    import torch

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"corrupt safetensors file {path}: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types; all mean "not a plain state dict"
        raise WeightsError(f"{path.name} is not a plain tensor state dict (refusing to unpickle code): "
                           f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name} does not hold a state dict of tensors")
    return obj


def _looks_like_safetensors(head: bytes) -> bool:
    # safetensors: 8-byte little-endian header length, then a JSON header starting with '{'
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n < (1 << 30) and head[8:9] == b"{"


def load_clip_state(model_dir: Path, name: str = "RN50", pretrained: str = "openai",
                    explicit: str | os.PathLike[str] | None = None) -> tuple[dict[str, torch.Tensor], ClipWeights, str]:
    """Find and read CLIP weights: (state dict, where they came from, sha256 of the file)."""
    where = find_clip_weights(model_dir, name, pretrained, explicit)
    state = load_state_file(where.path)
    return state, where, sha256_file(where.path)


_IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size")


def check_clip_weights(path: Path, name: str, pretrained: str) -> None:
    """Check that ``path`` holds every tensor of the ``name`` tower with the right shape.

    A safetensors file is judged from its header alone (no tensor is read); other formats are
    loaded with ``weights_only``. Raises the WeightsError loading would raise.
    """
    from .config import pretrained_model_config
    from .network import create_clip_shapes

    path = Path(path)
    expected = create_clip_shapes(pretrained_model_config(name, pretrained))
    if path.suffix == ".safetensors" or _looks_like_safetensors(_head(path)):
        with open(path, "rb") as fh:
            shapes = {k: tuple(int(v) for v in spec) for k, spec in _safetensors_shapes(fh, path).items()}
    else:
        shapes = {k: tuple(v.shape) for k, v in load_state_file(path).items()}
    shapes = _fitting_keys(shapes, expected, f"CLIP weights {path.name} do not fit {name}")
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise WeightsError(f"CLIP weights {path.name} do not fit {name}: {key} has shape {shapes[key]}, "
                               f"expected {shape}")


def _safetensors_shapes(fh, path: Path) -> dict[str, list[int]]:  # noqa: ANN001
    try:
        n = int.from_bytes(fh.read(8), "little")
        if not 2 <= n < (1 << 30):
            raise ValueError("bad header length")
        header = json.loads(fh.read(n))
        return {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise WeightsError(f"corrupt safetensors file {path.name}: {exc}") from exc


def copy_state_into(module: torch.nn.Module, path: Path, what: str = "weights",
                    ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a state file into ``module``'s existing tensors, strictly, one tensor at a time.

    For safetensors files only one tensor is resident beside the model at any moment, which
    keeps peak memory near the model's own size (a whole-file load would double it). Other
    formats go through :func:`load_state_file` (``weights_only``). Key or shape mismatches are
    a one-line WeightsError. File keys starting with one of ``ignore_prefixes`` are skipped.
    """
    path = Path(path)
    target = module.state_dict()
    if not (path.suffix == ".safetensors" or _looks_like_safetensors(_head(path))):
        state = load_state_file(path)
        _check_and_copy(target, {k: (lambda v=v: v) for k, v in state.items()}, path, what, ignore_prefixes)
        return
    with open(path, "rb") as fh:
        _check_and_copy(target, _safetensors_getters(fh, path), path, what, ignore_prefixes)


def _st_dtype(name: str) -> torch.dtype:
    import torch

    return {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
            "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
            "BOOL": torch.bool}[name]


def _safetensors_getters(fh, path: Path) -> dict:  # noqa: ANN001
    """Lazy per-tensor readers for a safetensors file, with plain reads rather than a memory map.

    A memory map would count every touched page of the file in the process's resident set for
    as long as it is open; reading tensor by tensor keeps the peak at model + one tensor.
    """
    try:
        n = int.from_bytes(fh.read(8), "little")
        if not 2 <= n < (1 << 30):
            raise ValueError("bad header length")
        header = json.loads(fh.read(n))
    except (ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(f"corrupt safetensors file {path.name}: {exc}") from exc
    base = 8 + n
    size = path.stat().st_size

    def reader(spec: dict) -> torch.Tensor:
        import torch

        try:
            dtype = _st_dtype(spec["dtype"])
            start, end = (int(v) for v in spec["data_offsets"])
            shape = [int(v) for v in spec["shape"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"corrupt safetensors file {path.name}: bad tensor entry") from exc
        if base + end > size or end < start:
            raise WeightsError(f"corrupt safetensors file {path.name}: truncated")
        fh.seek(base + start)
        buf = bytearray(fh.read(end - start))
        if not buf:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buf, dtype=dtype).reshape(shape)

    return {k: (lambda spec=v: reader(spec)) for k, v in header.items() if k != "__metadata__"}


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(9)
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror or exc}") from exc


_V = TypeVar("_V")


def _fitting_keys(found: dict[str, _V], expected: Collection[str], does_not_fit: str,
                  ignore_prefixes: tuple[str, ...] = ()) -> dict[str, _V]:
    """``found`` keyed like the model (DataParallel's ``module.`` prefix stripped, ignored keys and
    ``ignore_prefixes`` dropped); a WeightsError starting ``does_not_fit`` when its keys are not
    exactly ``expected``'s."""
    found = {(k[7:] if k.startswith("module.") else k): v for k, v in found.items()
             if k not in _IGNORED_KEYS and not k.startswith(ignore_prefixes or ("\0",))}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        sample = ", ".join((missing or unexpected)[:3])
        raise WeightsError(f"{does_not_fit} ({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {sample})")
    return found


def _check_and_copy(target: dict[str, torch.Tensor], getters: dict, path: Path, what: str,  # noqa: ANN001
                    ignore_prefixes: tuple[str, ...] = ()) -> None:
    import torch

    getters = _fitting_keys(getters, target, f"{what} {path.name} do not fit the configured model", ignore_prefixes)
    with torch.no_grad():
        for key, dest in target.items():
            src = getters[key]()
            if tuple(src.shape) != tuple(dest.shape):
                raise WeightsError(f"{what} {path.name} do not fit the configured model: {key} has shape "
                                   f"{tuple(src.shape)}, expected {tuple(dest.shape)}")
            dest.copy_(src)
