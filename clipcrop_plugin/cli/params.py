"""Shared click options, so every command spells ``--aspect``, ``--scorer`` & co. the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..candidates import AspectRatio, parse_aspect
from ..errors import ClipcropError, ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def _parse_aspects(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[AspectRatio, ...]:
    out: list[AspectRatio] = []
    for value in values:
        try:
            out.append(parse_aspect(value))
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return tuple(out)


def aspect_option(f: F) -> F:
    """``--aspect W:H`` (repeatable) -> ``tuple[AspectRatio, ...]``."""
    return click.option(
        "--aspect",
        "aspects",
        multiple=True,
        metavar="W:H",
        callback=_parse_aspects,
        help="Also suggest crops of this exact ratio (repeatable): 1:1, 4:5, 3:2, 16:9, 9:16, any W:H.",
    )(f)


def scorer_options(f: F) -> F:
    """``--scorer``, ``--device`` and ``--weights``."""
    f = click.option(
        "--weights",
        type=click.Path(dir_okay=False),
        default=None,
        help="CLIP weights or a clipcrop checkpoint to use (default: the model folder).",
    )(f)
    f = click.option(
        "--device", default="auto", show_default=True, help="Where a CLIP scorer runs: auto, cpu, cuda, cuda:1, mps."
    )(f)
    f = click.option(
        "--scorer",
        default="auto",
        show_default=True,
        help="Scorer name: auto, heuristic, clipcropping, zeroshot or one from a plugin.",
    )(f)
    return f


def top_option(default: int = 3) -> Callable[[F], F]:
    """``--top N``: how many crops of each candidate set to show (0: all)."""
    return click.option(
        "--top",
        type=click.IntRange(min=0),
        default=default,
        show_default=True,
        help="Crops to show per candidate set (0 = all).",
    )


def json_option(f: F) -> F:
    """``--json``: one JSON object per line instead of text."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object per photo per line.")(f)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def exit_code_for(exc: ClipcropError) -> int:
    """2 for bad configuration or arguments, 1 for everything else."""
    return 2 if isinstance(exc, ConfigError) else 1
