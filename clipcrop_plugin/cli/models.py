"""``clipcrop models``: list scorers and their weights; ``fetch``, ``import`` and ``use`` weights."""

from __future__ import annotations

import json

import click

from ..config import load_settings
from .db import db_option, open_library


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List scorers, the weights each would use and where they come from.

    \b
    Example:
      clipcrop models
      clipcrop models fetch                 # open_clip RN50 'openai' from the Hugging Face Hub
      clipcrop models import ~/Downloads/clipcropping-gaicd.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..model.inventory import checkpoint_rows
    from ..scoring.registry import scorer_inventory

    settings = load_settings()
    rows, ckpts = scorer_inventory(settings), checkpoint_rows(settings)
    if as_json:
        click.echo(json.dumps({"scorers": rows, "checkpoints": ckpts, "model_dir": str(settings.resolved_model_dir())}))
        return
    click.echo(f"model folder: {settings.resolved_model_dir()}")
    for row in rows:
        state = "ready  " if row["ready"] else "missing"
        click.echo(f"  {row['name']:<13} {state} {row['weights'] or '-'}  ({row['detail']})")
    for c in ckpts:
        mark = "*" if c["active"] else " "
        note = "" if c["can_score"] else "  [cannot score photos]"
        click.echo(f"  checkpoint {mark} {c['name']}  sha256 {c['sha256'][:12]}  {' -> '.join(c['lineage'])}  "
                   f"{c['created']}{note}")
    from ..scoring.learned import SCORERS, list_versions, load_active

    active = {sc: getattr(load_active(sc, settings), "sha256", None) for sc in SCORERS}
    for v in list_versions(settings.resolved_model_dir()):
        on = active.get(v.scorer) == v.sha256
        m = v.provenance.get("metrics") or {}
        agree = (f"  held-out agreement {100 * m['heldout_agreement_before']:.0f}% -> "
                 f"{100 * m['heldout_agreement_after']:.0f}%" if "heldout_agreement_after" in m else "")
        click.echo(f"  personal   {'*' if on else ' '} {v.name}  ({v.scorer}){agree}  {v.created}")


@models.command("fetch")
@click.argument("model", required=False)
@click.option("--pretrained", "tag", default=None, help="open_clip pretrained tag (default: the configured one).")
@click.option("--revision", default="main", show_default=True, help="Hub revision (branch, tag or commit).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def fetch_cmd(model: str | None, tag: str | None, revision: str, quiet: bool) -> None:
    """Download open_clip weights from the Hugging Face Hub, verify their sha256 and register them.

    Uses huggingface_hub's cache and honours HF_ENDPOINT, HF_HUB_OFFLINE, HF_TOKEN and proxy settings.

    \b
    Example:
      clipcrop models fetch                      # the configured tower, RN50 'openai' by default
      clipcrop models fetch RN101 --pretrained openai
    """
    from ..extras import require_extra
    from ..model.fetch import fetch_weights

    require_extra("clip", "clipcrop models fetch")  # open_clip's registry and huggingface_hub
    settings = load_settings()
    rec = fetch_weights(settings.resolved_model_dir(), model or settings.clip_model, tag or settings.clip_pretrained,
                        revision=revision, progress=not quiet)
    click.echo(f"fetched {rec.model} ({rec.pretrained}) {rec.filename} from {rec.repo}@{rec.revision[:12]}: "
               f"sha256 {rec.sha256[:12]}, {rec.size / 1e6:.1f} MB, registered in {settings.resolved_model_dir()}")


@models.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
def import_cmd(file: str, db: str | None) -> None:
    """Verify a checkpoint (sha256, config, tensor shapes) and copy it into the model folder.

    The first checkpoint that can score photos becomes the active one; switch later with
    `clipcrop models use`. A checkpoint whose cropping head was never trained (stage 1 or 2) or
    whose trunk was random is imported but marked: it never scores photos.

    \b
    Example:
      clipcrop models import ./runs/stage3/clipcropping.safetensors
    """
    from ..model.checkpoints import import_and_pin

    settings = load_settings()
    result = import_and_pin(file, settings.resolved_model_dir())
    info = result.info
    click.echo(f"imported {info.name} (sha256 {info.sha256[:12]}) into {info.path.parent}")
    if result.refusal:
        click.echo(f"warning: {info.name} cannot score photos: {result.refusal}", err=True)
    elif result.activated:
        with open_library(db) as lib:  # the database's active version follows the pin
            click.echo(lib.use_model(info.name))
    else:
        click.echo(f"switch to it with: clipcrop models use {info.name}")


@models.command("use")
@click.argument("name", required=False)
@db_option
def use_cmd(name: str | None, db: str | None) -> None:
    """Make an imported checkpoint the one the clipcropping scorer uses; without NAME, list lineages.

    NAME may also be a personalization of the heuristic or zeroshot scorer (`clipcrop models`
    lists them), or `heuristic` / `zeroshot` to switch that scorer back to its built-in weights.
    The database's active version follows (what `clipcrop models`, the API, the review page and
    the daemon read). Then re-score with `clipcrop scan --rescore`.

    \b
    Example:
      clipcrop models use                          # parent -> child chains, the active one starred
      clipcrop models use clipcropping-personal-2
      clipcrop models use heuristic-personal-20260101T120000000000Z
      clipcrop models use heuristic
    """
    from ..model.checkpoints import active_name, lineages

    settings = load_settings()
    model_dir = settings.resolved_model_dir()
    if name is None:
        pinned = active_name(model_dir)
        chains = lineages(model_dir)
        if not chains:
            click.echo(f"no checkpoints in {model_dir} (clipcrop models import FILE)")
        for chain in chains:
            click.echo(" -> ".join(f"{'*' if i.path.name == pinned else ''}{i.name}"
                                   f"{'' if i.can_score else ' (cannot score)'}" for i in chain))
        return
    with open_library(db) as lib:
        click.echo(lib.use_model(name))
