"""Find scorers by name through the ``clipcrop.scorers`` entry-point group, and resolve ``auto``.

Any installed package can add a scorer by declaring, in its own pyproject::

    [project.entry-points."clipcrop.scorers"]
    myscorer = "mypkg.scoring:MyScorer"

where ``MyScorer.create(settings, device="auto", weights=None)`` returns an object following
:class:`clipcrop_plugin.scoring.base.Scorer` and raises
:class:`~clipcrop_plugin.errors.WeightsError` when it cannot find its weights.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from ..config import Settings, load_settings
from ..errors import ConfigError, WeightsError
from ..extras import MissingExtraError, extra_for_import_error
from ..notices import say_once_a_day
from .base import Scorer

GROUP = "clipcrop.scorers"
AUTO_ORDER = ("clipcropping", "zeroshot")
log = logging.getLogger("clipcrop")

# Built in, so the weights-free path works even from a source tree that was never pip-installed.
_BUILTIN = {"heuristic": "clipcrop_plugin.scoring.heuristic:HeuristicScorer"}

NO_WEIGHTS_HINT = (
    "get CLIP weights with `clipcrop models fetch`, a trained checkpoint with `clipcrop models import FILE`, "
    "or pass `--weights PATH`"
)


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {
        name: EntryPoint(name=name, value=value, group=GROUP) for name, value in _BUILTIN.items()
    }
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep
    return found


def scorer_names() -> list[str]:
    """Names of every registered scorer (built in and from plugins), sorted; ``auto`` excluded."""
    return sorted(_entry_points())


def _missing_extra(name: str, exc: ImportError) -> MissingExtraError | None:
    extra = extra_for_import_error(exc)
    return MissingExtraError(f"the {name} scorer", extra) if extra else None


def _load_class(name: str, ep: EntryPoint) -> Any:
    try:
        return ep.load()
    except ImportError as exc:
        raise (_missing_extra(name, exc) or ConfigError(
            f"scorer {name!r} could not be loaded ({type(exc).__name__}: {exc})")) from exc
    except Exception as exc:  # a broken plugin must not take the whole tool down
        raise ConfigError(f"scorer {name!r} could not be loaded ({type(exc).__name__}: {exc})") from exc


def _create(name: str, cls: Any, settings: Settings, device: str, weights: str | None) -> Scorer:
    """``cls.create(...)``; an unexpected exception from a scorer becomes a one-line ConfigError."""
    try:
        return cls.create(settings, device=device, weights=weights)
    except (WeightsError, ConfigError, MissingExtraError):
        raise
    except ImportError as exc:
        raise (_missing_extra(name, exc) or ConfigError(
            f"scorer {name!r} could not start ({type(exc).__name__}: {exc})")) from exc
    except Exception as exc:
        raise ConfigError(f"scorer {name!r} could not start ({type(exc).__name__}: {exc})") from exc


def load_scorer(
    name: str = "auto",
    *,
    settings: Settings | None = None,
    device: str = "auto",
    weights: str | None = None,
) -> Scorer:
    """Return a ready scorer.

    ``auto`` tries ``clipcropping`` then ``zeroshot`` (when registered) and otherwise falls back
    to ``heuristic`` with exactly one warning saying how to get weights. If ``weights`` was given
    explicitly and no CLIP scorer accepts it, the :class:`WeightsError` is raised instead of
    silently ignoring the file. An unknown name raises :class:`ConfigError` listing known names.
    """
    settings = settings if settings is not None else load_settings()
    name = (name or settings.scorer or "auto").strip().lower()
    eps = _entry_points()
    if name != "auto":
        if name not in eps:
            raise ConfigError(f"unknown scorer {name!r}; known: auto, {', '.join(sorted(eps))}")
        return _create(name, _load_class(name, eps[name]), settings, device, weights)

    from ..model.checkpoints import UnfitCheckpoint

    reasons: list[str] = []
    for candidate in AUTO_ORDER:
        if candidate not in eps:
            continue
        try:
            scorer = _create(candidate, _load_class(candidate, eps[candidate]), settings, device, weights)
        except UnfitCheckpoint as exc:
            # A checkpoint is there but must not score photos: the user should know why it is passed over.
            reasons.append(f"{candidate}: {exc}")
            log.warning("auto: skipping %s: %s", candidate, exc)
            continue
        except (WeightsError, ConfigError, MissingExtraError) as exc:
            reasons.append(f"{candidate}: {exc}")
            log.debug("auto: %s unavailable: %s", candidate, exc)
            continue
        log.info("auto: using the %s scorer", candidate)
        return scorer
    if weights:
        raise WeightsError(f"no scorer accepts the weights {weights} ({'; '.join(reasons) or 'no CLIP scorer installed'})")
    say_once_a_day(log, "no-clip-weights", "no CLIP weights found, using the weights-free heuristic scorer; %s "
                   "(said once a day; `clipcrop models` shows the scorers)", NO_WEIGHTS_HINT)
    return _load_class("heuristic", eps["heuristic"]).create(settings, device=device, weights=None)


def scorer_inventory(settings: Settings) -> list[dict[str, Any]]:
    """One row per registered scorer, as the scorer class reports it (its ``inventory(settings)``).

    Rows: ``name``, ``ready``, ``weights``, ``sha256``, ``detail``. A plugin class without an
    ``inventory`` classmethod is listed as ready with detail "from a plugin"; one that cannot be
    imported is listed as not ready with the reason.
    """
    rows: list[dict[str, Any]] = []
    for name, ep in sorted(_entry_points().items()):
        row: dict[str, Any] = {"name": name, "ready": True, "weights": None, "sha256": None, "detail": "from a plugin"}
        try:
            cls = _load_class(name, ep)
            report = getattr(cls, "inventory", None)
            if callable(report):
                row.update(report(settings))
        except (ConfigError, MissingExtraError) as exc:
            row.update(ready=False, detail=str(exc))
        except ImportError as exc:  # the scorer's own imports need an extra that is not installed
            missing = _missing_extra(name, exc)
            row.update(ready=False, detail=str(missing) if missing else f"inventory failed ({exc})")
        except Exception as exc:  # a plugin's broken inventory must not hide the other scorers
            row.update(ready=False, detail=f"inventory failed ({type(exc).__name__}: {exc})")
        row["name"] = name
        rows.append(row)
    return rows
