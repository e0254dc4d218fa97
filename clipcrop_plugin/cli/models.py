"""``clipcrop models``: list scorers and their weights; ``models import FILE``: add a checkpoint."""

from __future__ import annotations

import json

import click

from ..config import load_settings
from ..errors import ClipcropError
from .params import exit_code_for, fail


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List scorers, the weights each would use and where they come from.

    \b
    Example:
      clipcrop models
      clipcrop models import ~/Downloads/clipcropping-gaicd.safetensors
    """
    if ctx.invoked_subcommand is not None:
        return
    from ..model.inventory import checkpoint_rows, scorer_inventory

    try:
        settings = load_settings()
        rows, ckpts = scorer_inventory(settings), checkpoint_rows(settings)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    if as_json:
        click.echo(json.dumps({"scorers": rows, "checkpoints": ckpts, "model_dir": str(settings.resolved_model_dir())}))
        return
    click.echo(f"model folder: {settings.resolved_model_dir()}")
    for row in rows:
        state = "ready  " if row["ready"] else "missing"
        click.echo(f"  {row['name']:<13} {state} {row['weights'] or '-'}  ({row['detail']})")
    for c in ckpts:
        click.echo(f"  checkpoint {'*' if c['active'] else ' '} {c['name']}  sha256 {c['sha256'][:12]}  {c['created']}")
    from ..scoring.learned import SCORERS, list_versions, load_active

    active = {sc: getattr(load_active(sc, settings), "sha256", None) for sc in SCORERS}
    for v in list_versions(settings.resolved_model_dir()):
        on = active.get(v.scorer) == v.sha256
        m = v.provenance.get("metrics") or {}
        agree = (f"  held-out agreement {100 * m['heldout_agreement_before']:.0f}% -> "
                 f"{100 * m['heldout_agreement_after']:.0f}%" if "heldout_agreement_after" in m else "")
        click.echo(f"  personal   {'*' if on else ' '} {v.name}  ({v.scorer}){agree}  {v.created}")


@models.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
def import_cmd(file: str) -> None:
    """Verify a checkpoint (sha256, config, tensor shapes) and copy it into the model folder.

    \b
    Example:
      clipcrop models import ./runs/stage3/clipcropping.safetensors
    """
    from ..model.checkpoints import import_checkpoint

    try:
        settings = load_settings()
        info = import_checkpoint(file, settings.resolved_model_dir())
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    click.echo(f"imported {info.name} (sha256 {info.sha256[:12]}) into {info.path.parent}")


@models.command("use")
@click.argument("name")
def use_cmd(name: str) -> None:
    """Make an imported checkpoint the one the clipcropping scorer uses (the others stay available).

    NAME may also be a personalization of the heuristic or zeroshot scorer (`clipcrop models`
    lists them), or `heuristic` / `zeroshot` to switch that scorer back to its built-in weights.
    Then re-score with `clipcrop scan --rescore`.

    \b
    Example:
      clipcrop models use clipcropping-personal-2
      clipcrop models use heuristic-personal-20260101T120000000000Z
      clipcrop models use heuristic
    """
    from ..model.checkpoints import set_active
    from ..scoring.learned import is_version_name, set_active_version

    try:
        settings = load_settings()
        if is_version_name(settings.resolved_model_dir(), name):
            click.echo(set_active_version(settings.resolved_model_dir(), name))
            return
        info = set_active(settings.resolved_model_dir(), name)
    except ClipcropError as exc:
        fail(str(exc), exit_code_for(exc))
    click.echo(f"clipcropping now uses {info.name} (sha256 {info.sha256[:12]})")
