"""Our checkpoints: ``NAME.safetensors`` + ``NAME.json`` sidecar, verified by sha256.

The sidecar holds the model config, the element prompts the model was trained with, training
provenance, the sha256 of the safetensors file and the sha256 of the parent checkpoint (the one
it was fine-tuned from, e.g. by personalization). Loading recomputes the hash and refuses a
mismatch; nothing is ever unpickled.

In a model folder, checkpoints live in ``<model_dir>/checkpoints/``; the active one is named by
``<model_dir>/checkpoints/ACTIVE`` (a file name). There is no implicit choice: without that pin
no checkpoint is active, so a new file in the folder (a personalization run, say) never takes
over by being newest.

Only trained heads score photos: a checkpoint may score users' photos when its lineage (the
provenance ``lineage``, inherited from parent to child) includes a trained cropping head
(stage 3, or a personalization of one) and its trunk came from pretrained weights
(provenance ``trunk``). :func:`scoring_refusal` says why another one may not.
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
HEAD_STAGES = ("cropping",)  # stages that train the cropping head (F_fusion + F_MLP)


class UnfitCheckpoint(WeightsError):
    """A checkpoint that may not score photos (untrained head or random trunk)."""


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

    @property
    def lineage(self) -> list[str]:
        """The stages this checkpoint's weights went through, oldest first."""
        return lineage_of(self.provenance)

    @property
    def trunk(self) -> str:
        """Where the trunk came from: ``pretrained``, ``random`` or ``unknown``."""
        return trunk_of(self.provenance)

    @property
    def can_score(self) -> bool:
        return scoring_refusal(self) is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``clipcrop models`` and the model-versions table)."""
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "parent_sha256": self.parent_sha256,
                "created": self.created, "clip_model": self.config.clip_model, "provenance": self.provenance,
                "lineage": self.lineage, "trunk": self.trunk, "can_score": self.can_score,
                "why_not": scoring_refusal(self)}


def lineage_of(provenance: dict[str, Any]) -> list[str]:
    """``provenance["lineage"]``, or for a checkpoint written before lineages were recorded its one stage."""
    lineage = provenance.get("lineage")
    if isinstance(lineage, list) and all(isinstance(x, str) for x in lineage):
        return list(lineage)
    stage = provenance.get("stage")
    return [str(stage)] if stage else []


def trunk_of(provenance: dict[str, Any]) -> str:
    """``pretrained`` / ``random`` / ``unknown`` (older checkpoints: read from their origin keys)."""
    trunk = provenance.get("trunk")
    if trunk in ("pretrained", "random"):
        return str(trunk)
    if provenance.get("random_trunk") is True:
        return "random"
    if provenance.get("random_trunk") is False and provenance.get("clip_weights"):
        return "pretrained"
    return "unknown"


def scoring_refusal(info: CheckpointInfo) -> str | None:
    """Why this checkpoint may not score photos (None when it may)."""
    lineage = info.lineage
    if not any(stage in HEAD_STAGES for stage in lineage):
        done = " -> ".join(lineage) or "no recorded stage"
        return (f"its cropping head was never trained (lineage: {done}); train stage 3 from it "
                "(clipcrop-train cropping --init ...)")
    if info.trunk != "pretrained":
        what = "a random trunk" if info.trunk == "random" else "a trunk of unrecorded origin"
        return f"it was trained from {what}, not from pretrained CLIP weights"
    return None


def inherit_lineage(provenance: dict[str, Any], parent_sha256: str | None) -> dict[str, Any]:
    """Provenance with ``lineage`` and ``trunk`` filled in from the parent checkpoint when missing.

    The parent is found through ``provenance["parent"]`` (its path) and must match
    ``parent_sha256``; a parent that cannot be read leaves the trunk ``unknown``.
    """
    out = dict(provenance)
    stage = str(out.get("stage") or "")
    parent = None
    if parent_sha256 and out.get("parent"):
        try:
            candidate = read_checkpoint_info(out["parent"])
            if candidate.sha256 == parent_sha256:
                parent = candidate
        except WeightsError:
            parent = None
    if "lineage" not in out:
        base = parent.lineage if parent is not None else []
        out["lineage"] = base + ([stage] if stage else [])
    if "trunk" not in out:
        if parent is not None:
            out["trunk"] = parent.trunk
        elif not parent_sha256:
            out["trunk"] = trunk_of(out)
        else:
            out["trunk"] = "unknown"
    return out


def may_activate(requested: bool, agreement_before: float, agreement_after: float) -> bool:
    """A personalization result becomes active only on request and when held-out agreement did not fall."""
    return bool(requested) and agreement_after >= agreement_before


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
        "provenance": inherit_lineage(provenance or {}, parent_sha256),
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


def active_name(model_dir: Path) -> str | None:
    """The file name pinned in ``checkpoints/ACTIVE``, or None."""
    pin = checkpoint_dir(model_dir) / ACTIVE_FILE
    try:
        name = pin.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(name).name if name else None


def active_checkpoint(model_dir: Path) -> CheckpointInfo | None:
    """The checkpoint pinned by ``checkpoints/ACTIVE`` (None without a pin: never "newest wins")."""
    name = active_name(model_dir)
    if name is None:
        return None
    return read_checkpoint_info(checkpoint_dir(model_dir) / name)


def set_active(model_dir: Path, name: str) -> CheckpointInfo:
    """Pin the active checkpoint by name (file stem or file name) in the model folder.

    A checkpoint that may not score photos (:func:`scoring_refusal`) cannot be pinned.
    """
    folder = checkpoint_dir(model_dir)
    info = read_checkpoint_info(folder / _weights_path(Path(name).name).name)
    why = scoring_refusal(info)
    if why:
        raise WeightsError(f"{info.name} cannot score photos: {why}")
    _write_text_atomic(folder / ACTIVE_FILE, info.path.name + "\n")
    return info


def _write_text_atomic(path: Path, text: str) -> None:
    # Through safeio: never through a symlink, mode bits honoured, fsynced then renamed.
    atomic_write(path, text.encode("utf-8"), error=WeightsError)


def lineages(model_dir: Path) -> list[list[CheckpointInfo]]:
    """The model folder's checkpoints as parent -> child chains (each chain oldest first)."""
    found = list_checkpoints(model_dir)
    by_sha = {i.sha256: i for i in found}
    children = {i.parent_sha256 for i in found if i.parent_sha256}
    chains = []
    for leaf in sorted((i for i in found if i.sha256 not in children), key=lambda i: i.created):
        chain, cur, seen = [], leaf, set()
        while cur is not None and cur.sha256 not in seen:
            seen.add(cur.sha256)
            chain.append(cur)
            cur = by_sha.get(cur.parent_sha256 or "")
        chains.append(chain[::-1])
    return chains


@dataclass
class ImportResult:
    """What ``models import`` did: the copy, whether it became active, and why it may not score."""

    info: CheckpointInfo
    activated: bool
    refusal: str | None


def import_checkpoint(path: str | os.PathLike[str], model_dir: Path) -> CheckpointInfo:
    """Verify a checkpoint (sha256, config, tensor shapes) and copy it into the model folder.

    Returns the info of the copy. An identical file already there is left as is; a different
    file of the same name is never overwritten (WeightsError). See :func:`import_and_pin`.
    """
    return import_and_pin(path, model_dir).info


def import_and_pin(path: str | os.PathLike[str], model_dir: Path) -> ImportResult:
    """:func:`import_checkpoint`, then pin the copy as active when nothing valid is pinned yet.

    A checkpoint that may not score photos is imported (it can be a parent for training) but
    marked in its copied sidecar (``import.can_score = false`` with the reason) and never pinned.
    """
    info = read_checkpoint_info(path)
    model, _ = load_checkpoint(info.path)  # full verification: hash, config, every tensor shape
    del model
    folder = checkpoint_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / info.path.name
    refusal = scoring_refusal(info)
    if dest.exists():
        if sha256_file(dest) != info.sha256:
            raise WeightsError(f"a different checkpoint named {dest.name} is already in {folder}; "
                               "rename the file to import it")
    else:
        for src, dst in ((info.path, dest), (info.sidecar, sidecar_path(dest))):
            with AtomicFile(dst, error=WeightsError) as out, open(src, "rb") as fh:
                shutil.copyfileobj(fh, out)
        side = json.loads(sidecar_path(dest).read_text(encoding="utf-8"))
        side["import"] = {"from": str(info.path), "can_score": refusal is None, "why_not": refusal,
                          "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_json_atomic(sidecar_path(dest), side)
    copied = read_checkpoint_info(dest)
    activated = False
    if refusal is None:
        try:
            current = active_checkpoint(model_dir)
        except WeightsError:
            current = None
        if current is None or not current.can_score:
            set_active(model_dir, copied.name)
            activated = True
    return ImportResult(copied, activated, refusal)
