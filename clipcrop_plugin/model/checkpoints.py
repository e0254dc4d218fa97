"""Our checkpoints: ``NAME.safetensors`` + ``NAME.json`` sidecar, verified by sha256.

The sidecar holds the model config, the element prompts the model was trained with, training
provenance, the sha256 of the safetensors file and the sha256 of the parent checkpoint (the one
it was fine-tuned from, e.g. by personalization). Loading recomputes the hash and refuses a
mismatch; nothing is ever unpickled.

In a model folder, checkpoints live in ``<model_dir>/checkpoints/``; the active one is named by
``<model_dir>/checkpoints/ACTIVE`` (a file name) or, without that file, the newest by mtime.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # listing and verifying checkpoints must not pay for importing torch
    import torch

from ..elements import ELEMENT_NAMES
from ..errors import WeightsError
from ..safeio import AtomicFile, atomic_write
from .config import ModelConfig
from .weights import sha256_file

FORMAT = "clipcrop-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUBDIR = "checkpoints"
ACTIVE_FILE = "ACTIVE"


@dataclass
class CheckpointInfo:
    """What a checkpoint's sidecar says about it."""

    path: Path
    sha256: str
    config: ModelConfig
    prompts: dict[str, list[tuple[str, ...]]]
    provenance: dict[str, Any] = field(default_factory=dict)
    parent_sha256: str | None = None
    created: str = ""

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``clipcrop models`` and the model-versions table)."""
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "parent_sha256": self.parent_sha256,
                "created": self.created, "clip_model": self.config.clip_model, "provenance": self.provenance}


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def _weights_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    return p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")


def is_checkpoint(path: str | os.PathLike[str]) -> bool:
    """True for one of our checkpoints (a sidecar with our format tag, or our safetensors metadata)."""
    p = Path(path)
    side = sidecar_path(p)
    if side.is_file():
        try:
            return json.loads(side.read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            return False
    if p.suffix == ".safetensors" and p.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(p), framework="pt") as fh:
                return (fh.metadata() or {}).get("format") == FORMAT
        except Exception:
            return False
    return False


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike[str], provenance: dict[str, Any] | None = None,
                    parent_sha256: str | None = None) -> CheckpointInfo:
    """Write ``model`` (a CLIPCropping) as NAME.safetensors + NAME.json; returns its info.

    Both files are written to temporaries and renamed into place, the sidecar last, so a crash
    never leaves a sidecar describing other bytes. The text cache should be current
    (``model.refresh_text_cache(...)``) so inference needs no text encoder run.
    """
    from safetensors.torch import save_file

    target = _weights_path(path)
    if getattr(model.clip, "transformer", None) is None:
        raise WeightsError("cannot save a model whose text tower was dropped")
    target.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic = AtomicFile(target, error=WeightsError)
    with atomic:
        # safetensors writes by name: into our temp file's inode, which AtomicFile then syncs and renames.
        save_file(state, str(atomic.tmp), metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        digest = sha256_file(atomic.tmp)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    side = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": digest,
        "parent_sha256": parent_sha256,
        "created": created,
        "config": model.config.to_dict(),
        "element_names": list(ELEMENT_NAMES),
        "prompts": {k: [list(p) for p in v] for k, v in model.prompts.items()},
        "provenance": provenance or {},
    }
    _write_json_atomic(sidecar_path(target), side)
    return read_checkpoint_info(target)


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    with AtomicFile(path, error=WeightsError) as fh:
        fh.write(text.encode("utf-8"))


def read_checkpoint_info(path: str | os.PathLike[str]) -> CheckpointInfo:
    """Parse a checkpoint's sidecar (no tensors are read, the hash is not checked)."""
    target = _weights_path(path)
    side = sidecar_path(target)
    if not target.is_file():
        raise WeightsError(f"checkpoint not found: {target}")
    if not side.is_file():
        raise WeightsError(f"checkpoint {target.name} has no sidecar {side.name}")
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise WeightsError(f"unreadable checkpoint sidecar {side}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WeightsError(f"{side.name} is not a clipcrop checkpoint sidecar")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise WeightsError(f"{target.name} was written by a newer clipcrop (format {data.get('format_version')})")
    if data.get("element_names") and list(data["element_names"]) != list(ELEMENT_NAMES):
        raise WeightsError(f"{target.name} explains different elements than this clipcrop version")
    try:
        config = ModelConfig.from_dict(data["config"])
        prompts = {k: [tuple(p) for p in v] for k, v in data["prompts"].items()}
        sha = str(data["sha256"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"checkpoint sidecar {side.name} is missing {exc}") from exc
    return CheckpointInfo(path=target, sha256=sha, config=config, prompts=prompts,
                          provenance=dict(data.get("provenance") or {}), parent_sha256=data.get("parent_sha256"),
                          created=str(data.get("created", "")))


def verify_sha256(info: CheckpointInfo) -> None:
    """Recompute the file hash; a mismatch with the sidecar is a WeightsError."""
    actual = sha256_file(info.path)
    if actual != info.sha256:
        raise WeightsError(f"checkpoint {info.path.name} does not match its sidecar sha256 "
                           f"(file {actual[:12]}, sidecar {info.sha256[:12]}); refusing to load it")


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu", text_tower: bool = True):
    """Verify and load one of our checkpoints: returns (model in eval mode on ``device``, info).

    ``text_tower=False`` (inference) never materialises the text encoder and prompt learners;
    the checkpoint must then carry its cached element text embeddings.
    """
    from .network import TEXT_PREFIXES, CLIPCropping, create_clip
    from .weights import copy_state_into

    info = read_checkpoint_info(path)
    verify_sha256(info)
    check_config_fits_file(info)
    try:
        model = CLIPCropping(info.config, create_clip(info.config, empty=True), info.prompts)
    except (RuntimeError, MemoryError) as exc:
        raise WeightsError(f"checkpoint {info.path.name}: cannot build the network its config describes "
                           f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    ignore: tuple[str, ...] = ()
    if not text_tower:
        model.text_ready.fill_(True)  # lets drop_text_tower run; the loaded value is checked below
        model.drop_text_tower()
        ignore = TEXT_PREFIXES
    try:
        copy_state_into(model, info.path, what="checkpoint", ignore_prefixes=ignore)
    except WeightsError as exc:
        raise WeightsError(str(exc).replace("do not fit the configured model", "does not fit its config")) from exc
    if not text_tower and not bool(model.text_ready):
        raise WeightsError(f"checkpoint {info.path.name} has no cached element text embeddings; "
                           "re-save it with model.refresh_text_cache() run first")
    model.to(device).eval()
    return model, info


SIZE_SLACK = 1 << 20  # the safetensors header and non-tensor bytes


def check_config_fits_file(info: CheckpointInfo) -> None:
    """Refuse a config whose tensors would outgrow the weights file, before allocating any.

    The network is built on PyTorch's ``meta`` device (shapes only, no memory), so a sidecar
    asking for a terabyte-sized layer is one :class:`WeightsError`, not an allocator crash.
    Where the meta build itself fails, the real load's shape checks still apply.
    """
    import torch
    from open_clip.model import CLIP
    from torch.fx.experimental import _config as fx_config

    from .network import CLIPCropping

    cfg = info.config.open_clip_config()
    try:
        # The prompt learner counts tokens with nonzero(), which meta tensors only fake.
        with fx_config.patch(meta_nonzero_assume_all_nonzero=True), torch.device("meta"):
            clip = CLIP(embed_dim=cfg["embed_dim"], vision_cfg=dict(cfg.get("vision_cfg", {})),
                        text_cfg=cfg["text_cfg"], quick_gelu=info.config.quick_gelu)
            model = CLIPCropping(info.config, clip, info.prompts)
        need = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    except WeightsError:
        raise
    except Exception:  # noqa: BLE001 - only an estimate; the real load verifies every tensor
        return
    have = info.path.stat().st_size
    if need > have + SIZE_SLACK:
        raise WeightsError(
            f"checkpoint {info.path.name}: its config describes {need / 1e9:.1f} GB of tensors but the file holds"
            f" {have / 1e6:.1f} MB; the config does not match the weights")


def checkpoint_dir(model_dir: Path) -> Path:
    return Path(model_dir) / CHECKPOINT_SUBDIR


def list_checkpoints(model_dir: Path) -> list[CheckpointInfo]:
    """Readable checkpoints in the model folder, newest first (unreadable ones are skipped)."""
    out = []
    folder = checkpoint_dir(model_dir)
    if folder.is_dir():
        for p in folder.glob("*.safetensors"):
            try:
                out.append(read_checkpoint_info(p))
            except WeightsError:
                continue
    return sorted(out, key=lambda i: (i.path.stat().st_mtime, i.name), reverse=True)


def active_checkpoint(model_dir: Path) -> CheckpointInfo | None:
    """The checkpoint the clipcropping scorer uses from the model folder (ACTIVE, else newest)."""
    folder = checkpoint_dir(model_dir)
    pin = folder / ACTIVE_FILE
    if pin.is_file():
        name = pin.read_text(encoding="utf-8").strip()
        if name:
            return read_checkpoint_info(folder / Path(name).name)
    found = list_checkpoints(model_dir)
    return found[0] if found else None


def set_active(model_dir: Path, name: str) -> CheckpointInfo:
    """Pin the active checkpoint by name (file stem or file name) in the model folder."""
    folder = checkpoint_dir(model_dir)
    info = read_checkpoint_info(folder / _weights_path(Path(name).name).name)
    atomic_write(folder / ACTIVE_FILE, (info.path.name + "\n").encode("utf-8"), error=WeightsError)
    return info


def import_checkpoint(path: str | os.PathLike[str], model_dir: Path) -> CheckpointInfo:
    """Verify a checkpoint (sha256, config, tensor shapes) and copy it into the model folder.

    Returns the info of the copy. An identical file already there is left as is; a different
    file of the same name is never overwritten (WeightsError).
    """
    info = read_checkpoint_info(path)
    model, _ = load_checkpoint(info.path)  # full verification: hash, config, every tensor shape
    del model
    folder = checkpoint_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / info.path.name
    if dest.exists():
        if sha256_file(dest) == info.sha256:
            return read_checkpoint_info(dest)
        raise WeightsError(f"a different checkpoint named {dest.name} is already in {folder}; rename the file to import it")
    for src, dst in ((info.path, dest), (info.sidecar, sidecar_path(dest))):
        with AtomicFile(dst, error=WeightsError) as out, open(src, "rb") as fh:
            shutil.copyfileobj(fh, out)
    return read_checkpoint_info(dest)
