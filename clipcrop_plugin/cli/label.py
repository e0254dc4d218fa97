"""``clipcrop label``: record accept/reject/box/preference labels for personalization."""

from __future__ import annotations

import click

from ..errors import ConfigError
from ..results import Box
from .db import db_option, open_library
from .params import fail
from .text import describe_label


def parse_box(text: str) -> Box:
    """``x1,y1,x2,y2`` (upright pixels) -> a box; ``ConfigError`` otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 4:
            raise ValueError
        x1, y1, x2, y2 = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"bad box {text!r}: expected x1,y1,x2,y2 in pixels") from None
    return (x1, y1, x2, y2)


def _rank_or_box(text: str) -> tuple[int | None, Box | None]:
    if "," in text:
        return None, parse_box(text)
    try:
        rank = int(text)
    except ValueError:
        raise ConfigError(f"bad crop {text!r}: give a rank (3) or a box (x1,y1,x2,y2)") from None
    if rank < 1:
        raise ConfigError(f"bad rank {rank}: ranks start at 1")
    return rank, None


@click.command("label")
@click.argument("photo")
@click.option("--accept", type=click.IntRange(min=1), is_flag=False, flag_value=1, default=None, metavar="[RANK]",
              help="Accept the candidate of this rank (default 1, the suggested crop).")
@click.option("--reject", type=click.IntRange(min=1), is_flag=False, flag_value=1, default=None, metavar="[RANK]",
              help="Reject the candidate of this rank (default 1).")
@click.option("--box", "box", metavar="X1,Y1,X2,Y2", help="The crop you would choose, in upright pixels.")
@click.option("--prefer", metavar="A", help="Preferred crop: a rank or x1,y1,x2,y2 (with --over).")
@click.option("--over", metavar="B", help="The crop --prefer is preferred over: a rank or x1,y1,x2,y2.")
@click.option("--aspect", metavar="SET", help="Candidate set the ranks refer to (default: the best crop's set).")
@click.option("--source", default="cli", show_default=True, help="Where the label came from.")
@db_option
def label(photo: str, accept: int | None, reject: int | None, box: str | None, prefer: str | None,
          over: str | None, aspect: str | None, source: str, db: str | None) -> None:
    """Label a photo's crops (PHOTO: path or id); labels personalize the model.

    \b
    Examples:
      clipcrop label IMG_0042.jpg --accept          # the suggested crop is right
      clipcrop label IMG_0042.jpg --reject 2 --aspect 1:1
      clipcrop label IMG_0042.jpg --box 120,80,3900,2700
      clipcrop label IMG_0042.jpg --prefer 3 --over 1
    """
    chosen = [n for n, v in (("--accept", accept), ("--reject", reject), ("--box", box), ("--prefer", prefer)) if v is not None]
    if len(chosen) != 1:
        fail("give exactly one of --accept, --reject, --box, --prefer", 2)
    if (prefer is None) != (over is None):
        fail("--prefer and --over go together", 2)
    # Through the facade, so a host's label_recorded hook sees CLI labels too.
    lib = open_library(db)
    try:
        if accept is not None:
            rec = lib.record_label(photo, "accept", rank=accept, aspect=aspect, source=source)
        elif reject is not None:
            rec = lib.record_label(photo, "reject", rank=reject, aspect=aspect, source=source)
        elif box is not None:
            rec = lib.record_label(photo, "box", box=parse_box(box), aspect=aspect, source=source)
        else:
            assert prefer is not None and over is not None
            (ra, ba), (rb, bb) = _rank_or_box(prefer), _rank_or_box(over)
            rec = lib.record_label(photo, "prefer", rank=ra, box=ba, other_box=bb, other_rank=rb, aspect=aspect,
                                   source=source)
    finally:
        lib.close()
    what = describe_label(rec.kind, aspect=rec.aspect, rank=rec.rank, box=rec.box, other_rank=rec.other_rank,
                          other_box=rec.other_box)
    click.echo(f"label {rec.id}: {what} on {rec.path}")
