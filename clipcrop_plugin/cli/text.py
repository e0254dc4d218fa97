"""Words for people: how every command prints element changes and labels.

Text output names elements the way a photographer reads them ("rule of thirds"); JSON and CSV
keep the identifiers (``rule_of_thirds``) that ``--enhances`` and the API take.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..elements import BY_NAME
from ..results import ElementChange


def element_words(name: str) -> str:
    """``rule_of_thirds`` -> ``rule of thirds`` (an unknown plugin element keeps its name)."""
    return BY_NAME[name].label if name in BY_NAME else name.replace("_", " ")


def explain_changes(changes: Iterable[ElementChange], empty: str = "no element changes") -> str:
    """``more rule of thirds (+0.31), less center composition (-0.28)``."""
    # Explanations are chosen relative to each scorer's own scale (suggest.explain_changes), so a
    # change may be tiny in absolute terms: small ones keep two significant digits, never "+0.00".
    parts = [f"{'more' if c.change >= 0 else 'less'} {element_words(c.element)} "
             f"({c.change:+.2f})" if abs(c.change) >= 0.01 else
             f"{'more' if c.change >= 0 else 'less'} {element_words(c.element)} ({c.change:+.2g})" for c in changes]
    return ", ".join(parts) if parts else empty


def _box(box: Sequence[int]) -> str:
    return ",".join(str(int(v)) for v in box)


def describe_label(kind: str, *, aspect: str | None = None, rank: int | None = None,
                   box: Sequence[int] | None = None, other_rank: int | None = None,
                   other_box: Sequence[int] | None = None) -> str:
    """One phrase per label: ``accept 1:1 #1 (box 0,0,300,300)``, ``your crop 10,20,300,400``,
    ``prefer grid #3 over #1``."""
    if kind == "box":
        return f"your crop {_box(box)}" if box else "your crop"
    where = f" {aspect}" if aspect else ""
    if kind == "prefer":
        first = f"#{rank}" if rank else (_box(box) if box else "?")
        second = f"#{other_rank}" if other_rank else (_box(other_box) if other_box else "?")
        return f"prefer{where} {first} over {second}"
    what = f"{kind}{where}"
    if rank:
        what += f" #{rank}"
    if box:
        what += f" (box {_box(box)})" if rank else f" box {_box(box)}"
    return what
