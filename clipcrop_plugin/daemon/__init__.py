"""``clipcrop watch``: the folder daemon (SPEC 7).

Events only leave hints (:mod:`.events`); a hint becomes work once the file is stable
(:mod:`.stability`); work flows through a bounded pipeline of decoder threads, one batch scorer
and one database thread (:mod:`.pipeline`); :mod:`.service` ties it together with the observers
(:mod:`.observer`) and the status file (:mod:`.status`).
"""

from __future__ import annotations

__all__ = ["WatchService"]


def __getattr__(name: str) -> object:
    # Lazy so that ``clipcrop status`` can read the status file without importing the scorer.
    if name == "WatchService":
        from .service import WatchService

        return WatchService
    raise AttributeError(name)
