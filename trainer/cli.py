"""``clipcrop-train``: the paper's three training stages, evaluation and personalization.

Each command is a thin shell over a library function (``trainer.stages.run_stage``,
``trainer.evaluate.evaluate_*``, ``trainer.personalize.personalize``); torch is imported only
when a command runs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from clipcrop_plugin.errors import ClipcropError
from clipcrop_plugin.extras import MissingExtraError, extra_for_import_error


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our typed errors into one ``error:`` line and exit 1; Ctrl-C exits 130 quietly."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClipcropError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except ImportError as exc:
            extra = extra_for_import_error(exc)
            if extra is None:
                raise
            click.echo(f"error: {MissingExtraError('clipcrop-train', 'train')}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted; rerun the same command to resume from the last finished epoch", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Train, evaluate and personalize CLIPCropping models.

    \b
    Example (the paper's Algorithm 1, each stage from the previous checkpoint):
      clipcrop models fetch                          # pretrained RN50 'openai' CLIP weights
      clipcrop-train recipe --data-root ~/datasets --out runs/paper   # all of the below, resumable
      clipcrop-train composition --data CADB_Dataset --out runs/s1
      clipcrop-train aesthetic --data AADB/imgListFiles_label --init runs/s1/composition-s1.safetensors --out runs/s2
      clipcrop-train cropping --data GAICD --init runs/s2/aesthetic-s2.safetensors --out runs/s3
      clipcrop-train evaluate --dataset gaicd --root GAICD --checkpoint runs/s3/cropping-s3.safetensors
    """


def _stage_options(stage: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    from .defaults import DEFAULTS

    d = DEFAULTS[stage]

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option("--data", "data", required=True, type=click.Path(path_type=Path),
                         help=d["data_help"]),
            click.option("--val", "val", type=click.Path(path_type=Path), default=None,
                         help="Held-out data in the same form (default: the 'test' split for GAICD, "
                              "else 10% of --data, chosen by the seed)."),
            click.option("--out", "out", required=True, type=click.Path(path_type=Path),
                         help="Run folder: <stage>-<folder>.safetensors (+ .json sidecar) and resume.pt."),
            click.option("--init", "init", type=click.Path(path_type=Path), default=None,
                         help="Checkpoint of the previous stage to start from (Algorithm 1)."),
            click.option("--clip-weights", type=click.Path(path_type=Path), default=None,
                         help="Pretrained open_clip weights for a fresh start (no --init); default: found as "
                              "clipcrop finds them (model folder, `clipcrop models fetch`, the Hugging Face cache)."),
            click.option("--random-init", is_flag=True,
                         help="Fresh start from a RANDOM trunk (tests, ablations); recorded in the checkpoint, "
                              "which can then never score photos."),
            click.option("--model-config", type=click.Path(path_type=Path), default=None,
                         help="JSON ModelConfig for a fresh start (default: RN50, 224x224)."),
            click.option("--lr", type=float, default=d["lr"], show_default=True, help="AdamW learning rate."),
            click.option("--epochs", type=int, default=d["epochs"], show_default=True),
            click.option("--batch-size", type=int, default=d["batch_size"], show_default=True,
                         help="Images per step (stage 3: all candidates of each image)."),
            click.option("--weight-decay", type=float, default=0.01, show_default=True),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N or mps."),
            click.option("--amp/--no-amp", default=True, show_default=True,
                         help="Mixed precision (used on CUDA only)."),
            click.option("--split", default="train", show_default=True, help="Split of --data to train on."),
            click.option("--fresh", is_flag=True, help="Ignore an existing resume.pt in --out and start over."),
            click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object."),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return deco


def _run(stage: str, **kw: Any) -> None:
    from .stages import StageSettings, run_stage

    as_json = kw.pop("as_json")
    settings = StageSettings(stage=stage, **kw)
    result = run_stage(settings, progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(f"{stage}: wrote {result.checkpoint} (sha256 {result.sha256[:12]}) after {result.epochs} epoch(s)")
        for key, value in result.metrics.items():
            click.echo(f"  {key}: {value:.4f}")


@cli.command()
@_stage_options("composition")
@_friendly
def composition(**kw: Any) -> None:
    """Stage 1: composition knowledge (CLIP visual + CKE + prompt learner, InfoNCE on CADB labels).

    \b
    Example:
      clipcrop-train composition --data CADB_Dataset --out runs/s1
    """
    _run("composition", **kw)


@cli.command()
@_stage_options("aesthetic")
@_friendly
def aesthetic(**kw: Any) -> None:
    """Stage 2: aesthetic knowledge (CLIP visual + AKE + prompt learner, InfoNCE on AADB attributes).

    \b
    Example:
      clipcrop-train aesthetic --data AADB/imgListFiles_label --init runs/s1/composition-s1.safetensors --out runs/s2
    """
    _run("aesthetic", **kw)


@cli.command()
@_stage_options("cropping")
@_friendly
def cropping(**kw: Any) -> None:
    """Stage 3: crop scoring (CLIP visual + fusion + MLP, SmoothL1 + ranking on GAICD MOS).

    --data may also be an FCDB folder (cropping_training_set.json + ranking_annotation.json): the
    head then learns from FCDB's crop preference pairs.

    \b
    Example:
      clipcrop-train cropping --data GAICD --init runs/s2/aesthetic-s2.safetensors --out runs/s3
    """
    _run("cropping", **kw)


def _per_stage(value: str | None, cast: Callable[[str], Any], name: str) -> dict[str, Any]:
    from .defaults import STAGES

    if not value:
        return {}
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != len(STAGES):
        raise click.BadParameter(f"give {len(STAGES)} comma-separated values (stage 1, 2, 3)", param_hint=name)
    try:
        return {stage: cast(p) for stage, p in zip(STAGES, parts)}
    except ValueError:
        raise click.BadParameter(f"not a list of numbers: {value!r}", param_hint=name) from None


@cli.command()
@click.option("--data-root", required=True, type=click.Path(path_type=Path),
              help="Folder holding the downloaded data sets (CADB_Dataset/, AADB/, GAICD/, optionally FCDB/).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Run folder (recipe.json, one folder per stage).")
@click.option("--clip-weights", type=click.Path(path_type=Path), default=None,
              help="Pretrained open_clip weights for stage 1 (default: found as clipcrop finds them).")
@click.option("--random-init", is_flag=True, help="Stage 1 from a random trunk (smoke runs; never scores photos).")
@click.option("--model-config", type=click.Path(path_type=Path), default=None, help="JSON ModelConfig (default: RN50).")
@click.option("--epochs", default=None, help="Epochs of stages 1,2,3 (default: the paper's 10,10,60).")
@click.option("--batch-size", default=None, help="Batch sizes of stages 1,2,3 (default 16,16,1).")
@click.option("--lr", default=None, help="Learning rates of stages 1,2,3 (default 1e-7,1e-6,5e-6).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--amp/--no-amp", default=True, show_default=True)
@click.option("--no-import", "no_import", is_flag=True, help="Do not import the stage-3 checkpoint into the model folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the final state as one JSON object.")
@_friendly
def recipe(data_root: Path, out: Path, clip_weights: Path | None, random_init: bool, model_config: Path | None,
           epochs: str | None, batch_size: str | None, lr: str | None, seed: int, device: str, amp: bool,
           no_import: bool, as_json: bool) -> None:
    """Stage 1, 2, 3, evaluation and `clipcrop models import`, in one resumable command.

    Rerun the same command after an interruption: finished steps are skipped and the current
    stage resumes from its last finished epoch. docs/training.md: where to get each data set.

    \b
    Example:
      clipcrop models fetch
      clipcrop-train recipe --data-root ~/datasets --out runs/paper --device cuda
    """
    from .recipe import RecipeSettings, run_recipe

    settings = RecipeSettings(data_root=data_root, out=out, device=device, amp=amp, seed=seed, clip_weights=clip_weights,
                              random_init=random_init, model_config=model_config,
                              epochs=_per_stage(epochs, int, "--epochs"), batch_size=_per_stage(batch_size, int, "--batch-size"),
                              lr=_per_stage(lr, float, "--lr"), import_model=not no_import)
    state = run_recipe(settings, progress=not as_json, say=(lambda _m: None) if as_json else click.echo)
    if as_json:
        click.echo(json.dumps(state))


@cli.command()
@click.option("--dataset", type=click.Choice(["gaicd", "fcdb"]), required=True)
@click.option("--root", required=True, type=click.Path(path_type=Path),
              help="Data set folder (GAICD: images/ and annotations/; FCDB: its JSON and images/).")
@click.option("--split", default="test", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="A trained checkpoint to score with.")
@click.option("--predictions", type=click.Path(path_type=Path), default=None,
              help="JSON {image name: [score per annotation line]} (FCDB: {name: [x1,y1,x2,y2]}).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@_friendly
def evaluate(dataset: str, root: Path, split: str, checkpoint: Path | None, predictions: Path | None,
             device: str, as_json: bool) -> None:
    """Evaluate with the official protocol (GAIC Acc/Acc^w/SRCC/PLCC, or FCDB IoU/Disp).

    \b
    Examples:
      clipcrop-train evaluate --dataset gaicd --root GAICD --checkpoint runs/s3/cropping-s3.safetensors
      clipcrop-train evaluate --dataset gaicd --root GAICD --predictions other_method.json --json
    """
    from .evaluate import evaluate_checkpoint, evaluate_predictions, format_table

    if (checkpoint is None) == (predictions is None):
        raise click.UsageError("give exactly one of --checkpoint or --predictions")
    if predictions is not None:
        result = evaluate_predictions(dataset, root, predictions, split)
    else:
        result = evaluate_checkpoint(dataset, root, checkpoint, split, device, progress=not as_json)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "images"} | {"images": int(result["images"])}))
    else:
        click.echo(format_table(result, dataset))


@cli.command()
@click.option("--db", "db_url", default=None, help="Database URL (default: the configured clipcrop database).")
@click.option("--scorer", type=click.Choice(["auto", "heuristic", "zeroshot", "clipcropping"]), default="auto",
              show_default=True, help="Which scorer to personalize (auto: the one the library would use now).")
@click.option("--rule", type=click.Choice(["iou", "far4"]), default="iou", show_default=True,
              help="How accepts and drawn boxes become preferences (docs/personalization.md).")
@click.option("--check", is_flag=True,
              help="Only say how many usable labels there are, how many are needed, and which photos to label next.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="clipcropping: start from this checkpoint instead of the active model version.")
@click.option("--weights", default=None, help="zeroshot: CLIP weights (or one of our checkpoints) to use.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where to write the new version (default: the model folder).")
@click.option("--holdout", type=float, default=0.25, show_default=True, help="Share of labelled photos held out.")
@click.option("--epochs", type=int, default=30, show_default=True, help="clipcropping only.")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="clipcropping only.")
@click.option("--train-trunk-stage", is_flag=True, help="clipcropping: also fine-tune the trunk's last stage.")
@click.option("--activate", is_flag=True,
              help="Make the new version active, if its held-out agreement did not fall.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_friendly
def personalize(db_url: str | None, scorer: str, rule: str, check: bool, checkpoint: Path | None,
                weights: str | None, out: Path | None, holdout: float, epochs: int, lr: float,
                train_trunk_stage: bool, activate: bool, seed: int, device: str, as_json: bool) -> None:
    """Learn your taste from your labels (accept/reject, drawn boxes, A-over-B choices), for any scorer.

    heuristic: re-weights its features and elements; zeroshot: a light head on its CLIP crop
    embeddings; clipcropping: fine-tunes the cropping head. Prints held-out agreement before
    and after; the new version becomes active only with --activate and only if it did not fall.

    \b
    Example:
      clipcrop-train personalize --check        # enough labels? which photos to label next?
      clipcrop label photo.jpg --accept 1      # ... label a few dozen photos, then:
      clipcrop-train personalize --activate
      clipcrop scan --rescore
    """
    from .personalize import PersonalizeSettings, format_status, label_status, resolve_scorer
    from .personalize import personalize as run

    if check:
        from clipcrop_plugin.config import load_settings
        from clipcrop_plugin.store import Store

        with Store.open(db_url) as store:
            st = label_status(store, resolve_scorer(scorer, load_settings(), weights, device))
        click.echo(json.dumps(st) if as_json else format_status(st))
        return
    result = run(PersonalizeSettings(db_url=db_url, scorer=scorer, rule=rule, checkpoint=checkpoint, weights=weights,
                                     out=out, holdout=holdout, epochs=epochs, lr=lr,
                                     train_trunk_stage=train_trunk_stage, activate=activate, seed=seed,
                                     device=device), progress=not as_json)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
    else:
        click.echo(result.summary())
