"""``clipcrop models``: list scorers and their weights; ``models import FILE``: add a checkpoint."""

from __future__ import annotations

import json

import click

from ..config import load_settings


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
        click.echo(f"  checkpoint {'*' if c['active'] else ' '} {c['name']}  sha256 {c['sha256'][:12]}  {c['created']}")


@models.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
def import_cmd(file: str) -> None:
    """Verify a checkpoint (sha256, config, tensor shapes) and copy it into the model folder.

    \b
    Example:
      clipcrop models import ./runs/stage3/clipcropping.safetensors
    """
    from ..model.checkpoints import import_checkpoint

    settings = load_settings()
    info = import_checkpoint(file, settings.resolved_model_dir())
    click.echo(f"imported {info.name} (sha256 {info.sha256[:12]}) into {info.path.parent}")


@models.command("use")
@click.argument("name")
def use_cmd(name: str) -> None:
    """Make an imported checkpoint the one the clipcropping scorer uses (the others stay available).

    \b
    Example:
      clipcrop models use clipcropping-personal-2
    """
    from ..model.checkpoints import set_active

    settings = load_settings()
    info = set_active(settings.resolved_model_dir(), name)
    click.echo(f"clipcropping now uses {info.name} (sha256 {info.sha256[:12]})")
