"""``clipcrop-train recipe``: the paper's whole Algorithm 1 in one resumable command.

Stage 1 (CADB), stage 2 (AADB) and stage 3 (GAICD), each from the previous checkpoint, then the
official evaluations (GAICD test split; FCDB's test split when FCDB is there) and ``models
import`` of the stage-3 checkpoint. ``OUT/recipe.json`` records every finished step (with the
sha256 of what it wrote), so a rerun after an interruption or an error skips the finished steps
and each stage resumes from its own last finished epoch (``resume.pt``).

Data sets are found under ``--data-root`` by their official files, at most two folders deep:
``composition_elements.json`` (CADB), ``imgListFiles_label/`` (AADB), ``annotations/train``
(GAICD) and ``cropping_testing_set.json`` (FCDB, optional).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clipcrop_plugin.model import ModelConfig
from clipcrop_plugin.model.weights import sha256_file

from .data import AADB_LABEL_DIR, CADB_ELEMENTS, FCDB_TEST, DataError
from .defaults import DEFAULTS

STATE_FILE = "recipe.json"
STAGE_DATA = {"composition": "cadb", "aesthetic": "aadb", "cropping": "gaicd"}


@dataclass
class RecipeSettings:
    """One recipe run; ``epochs`` maps a stage to its epoch count (default: the paper's)."""

    data_root: Path
    out: Path
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    clip_weights: Path | None = None
    random_init: bool = False
    model_config: Path | ModelConfig | None = None
    epochs: dict[str, int] = field(default_factory=dict)
    batch_size: dict[str, int] = field(default_factory=dict)
    lr: dict[str, float] = field(default_factory=dict)
    model_dir: Path | None = None
    import_model: bool = True


def _matches(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if (folder / CADB_ELEMENTS).is_file():
        found["cadb"] = folder
    if (folder / AADB_LABEL_DIR).is_dir():
        found["aadb"] = folder
    elif folder.name == AADB_LABEL_DIR:
        found["aadb"] = folder.parent
    if (folder / "annotations" / "train").is_dir() and (folder / "images" / "train").is_dir():
        found["gaicd"] = folder
    if (folder / FCDB_TEST).is_file():
        found["fcdb"] = folder
    return found


def find_datasets(root: str | Path) -> dict[str, Path]:
    """Where each data set lies under ``root`` (the first match, breadth first, two levels deep)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such data folder: {root}")
    found: dict[str, Path] = {}
    level = [root]
    for _ in range(3):
        nxt: list[Path] = []
        for folder in level:
            for key, path in _matches(folder).items():
                found.setdefault(key, path)
            try:
                nxt += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        level = nxt
    missing = [k for k in ("cadb", "aadb", "gaicd") if k not in found]
    if missing:
        want = {"cadb": f"CADB_Dataset/ with {CADB_ELEMENTS}", "aadb": f"AADB with {AADB_LABEL_DIR}/",
                "gaicd": "GAICD with images/train and annotations/train"}
        raise DataError(f"{root}: no {', '.join(want[k] for k in missing)} found (looked two folders deep; "
                        "docs/training.md says where to get each data set)")
    return found


def _load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"steps": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path} ({exc}); remove it to start the recipe over") from None
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        raise DataError(f"{path} is not a recipe state file; remove it to start the recipe over")
    return data


def _save_state(path: Path, state: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".recipe.", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _done(state: dict[str, Any], step: str) -> dict[str, Any] | None:
    """The recorded result of ``step`` if its checkpoint is still there with the recorded hash."""
    rec = state["steps"].get(step)
    if not isinstance(rec, dict):
        return None
    ckpt = rec.get("checkpoint")
    if ckpt and (not Path(ckpt).is_file() or sha256_file(Path(ckpt)) != rec.get("sha256")):
        return None
    return rec


def run_recipe(r: RecipeSettings, *, progress: bool = True,
               say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the whole recipe; returns the state (steps with checkpoints, metrics, import)."""
    from .evaluate import evaluate_checkpoint
    from .stages import StageSettings, run_stage

    data = find_datasets(r.data_root)
    r.out.mkdir(parents=True, exist_ok=True)
    state_path = r.out / STATE_FILE
    state = _load_state(state_path)
    state["data"] = {k: str(v) for k, v in data.items()}
    previous: Path | None = None
    for stage, key in STAGE_DATA.items():
        rec = _done(state, stage)
        if rec is not None:
            say(f"{stage}: done earlier ({Path(rec['checkpoint']).name}), skipped")
            previous = Path(rec["checkpoint"])
            continue
        d = DEFAULTS[stage]
        s = StageSettings(stage=stage, data=data[key], out=r.out / f"s{list(STAGE_DATA).index(stage) + 1}-{stage}",
                          init=previous, clip_weights=r.clip_weights if previous is None else None,
                          random_init=r.random_init and previous is None, model_config=r.model_config,
                          lr=r.lr.get(stage, d["lr"]), epochs=r.epochs.get(stage, d["epochs"]),
                          batch_size=r.batch_size.get(stage, d["batch_size"]), seed=r.seed, device=r.device, amp=r.amp,
                          model_dir=r.model_dir)
        say(f"{stage}: training on {data[key]} ({s.epochs} epochs) into {s.out}")
        result = run_stage(s, progress=progress)
        assert result.checkpoint is not None
        state["steps"][stage] = {"checkpoint": str(result.checkpoint), "sha256": result.sha256,
                                 "metrics": result.metrics, "epochs": result.epochs}
        _save_state(state_path, state)
        previous = result.checkpoint
    assert previous is not None
    for dataset in ("gaicd", "fcdb"):
        step = f"evaluate-{dataset}"
        if dataset not in data:
            continue
        rec = state["steps"].get(step)
        if isinstance(rec, dict) and rec.get("sha256") == state["steps"]["cropping"]["sha256"]:
            say(f"{step}: done earlier, skipped")
            continue
        say(f"{step}: {data[dataset]} test split")
        metrics = evaluate_checkpoint(dataset, data[dataset], previous, "test", r.device, progress=progress)
        state["steps"][step] = {"sha256": state["steps"]["cropping"]["sha256"], "metrics": metrics}
        _save_state(state_path, state)
    if r.import_model:
        from clipcrop_plugin.config import load_settings
        from clipcrop_plugin.model.checkpoints import import_and_pin

        model_dir = Path(r.model_dir) if r.model_dir else load_settings().resolved_model_dir()
        imported = import_and_pin(previous, model_dir)
        state["steps"]["import"] = {"checkpoint": str(imported.info.path), "sha256": imported.info.sha256,
                                    "activated": imported.activated, "why_not": imported.refusal}
        _save_state(state_path, state)
        if imported.refusal:
            say(f"import: {imported.info.name} imported but cannot score photos: {imported.refusal}")
        else:
            say(f"import: {imported.info.name} into {model_dir}"
                + (" (now active)" if imported.activated else f" (clipcrop models use {imported.info.name})"))
    return state
