"""The job layer: record a scored photo and publish it, the one way every entry point does.

"Score, store, write the metadata, fire the hooks" used to be assembled by ``clipcrop scan``, the
daemon, ``clipcrop xmp`` and the :class:`~clipcrop_plugin.api.Library` facade, each slightly
differently. Now they all call these functions, so:

* scores are stored before metadata is written (after a crash between the two the photo is
  scored and only its XMP is missing, never the other way round);
* metadata follows one :class:`MetadataPolicy` (sidecar, embed or none);
* after a write that changed the photo's bytes (embedded XMP written or cleared) the store gets
  the new content hash, size and mtime, so the next scan does not score the photo again;
* ``photo_scored`` and ``metadata_written`` fire exactly once per photo, through :func:`fire`.

Which crop is written is decided by the metadata stage (:func:`clipcrop_plugin.xmp.writer.build_packet`),
not here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ClipcropError, ConfigError
from .hashing import content_hash
from .hooks import notify
from .results import Suggestion
from .xmp.atomic import deferred_dir_sync
from .xmp.batch import CHUNK, Outcome, plan_writes, with_path
from .xmp.writer import clear_crop_metadata, write_crop_metadata

if TYPE_CHECKING:
    import pluggy

    from .candidates import AspectRatio
    from .config import Settings
    from .store import Store

log = logging.getLogger("clipcrop.jobs")

MODES = ("sidecar", "embed", "none")
# (suggestion, content_hash, mtime, size): what Store.record_suggestions takes.
Scored = tuple[Suggestion, str, "float | None", "int | None"]


@dataclass(frozen=True)
class MetadataPolicy:
    """Whether and how crop metadata is published: ``mode`` ``sidecar`` | ``embed`` | ``none``;
    ``naming`` ``base`` (``IMG.xmp``) | ``ext`` (``IMG.JPG.xmp``); ``aspects``: the sets written
    (the best crop of the first one), empty for all."""

    mode: str = "sidecar"
    naming: str = "base"
    aspects: tuple[str, ...] = ()
    keep_margin: float | None = None  # crop or keep (results.is_keep); None: the configured one

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"metadata mode must be one of {', '.join(MODES)}, not {self.mode!r}")

    @property
    def writes(self) -> bool:
        return self.mode != "none"

    @classmethod
    def from_settings(cls, settings: Settings, *, write: bool = True, embed: bool | None = None,
                      naming: str | None = None, aspects: Sequence[str | AspectRatio] | None = None) -> MetadataPolicy:
        """The policy of the configuration (``embed``, ``sidecar_naming``, ``aspects``), with the
        caller's explicit choices (a CLI flag) taking precedence; ``write=False`` gives ``none``."""
        embed = settings.embed if embed is None else embed
        names = aspect_names(aspects if aspects else settings.aspects)
        mode = ("embed" if embed else "sidecar") if write else "none"
        return cls(mode, naming or settings.sidecar_naming, names, settings.keep_margin)


@dataclass(frozen=True)
class JobSettings:
    """The settings a scoring job runs with, resolved once from the configuration and the
    caller's explicit choices (CLI flags, facade arguments): those win, the config fills the rest."""

    aspects: tuple[AspectRatio, ...]
    batch_size: int
    policy: MetadataPolicy

    @classmethod
    def resolve(cls, settings: Settings, *, aspects: Sequence[str | AspectRatio] | None = None,
                batch_size: int | None = None, write: bool = True, embed: bool | None = None,
                naming: str | None = None) -> JobSettings:
        """``aspects`` (names or ratios; empty or None: the configured ones), ``batch_size``
        (None: the configured one), and the metadata policy (see :meth:`MetadataPolicy.from_settings`).
        A bad configured ratio raises :class:`~clipcrop_plugin.errors.ConfigError`."""
        from .candidates import AspectRatio, parse_aspect

        raw = list(aspects) if aspects else list(settings.aspects)
        ratios = tuple(a if isinstance(a, AspectRatio) else parse_aspect(a) for a in raw)
        size = max(1, int(batch_size if batch_size is not None else settings.batch_size))
        policy = MetadataPolicy.from_settings(settings, write=write, embed=embed, naming=naming, aspects=ratios)
        return cls(ratios, size, policy)


def aspect_names(aspects: Iterable[str | AspectRatio] | None) -> tuple[str, ...]:
    """Canonical set names (``"4:5"``) of ``aspects`` given as text (``"portrait"``) or ratios."""
    from .candidates import parse_aspect

    return tuple(parse_aspect(a).name if isinstance(a, str) else a.name for a in (aspects or ()))


def fire(plugins: pluggy.PluginManager | None, name: str, *, strict: bool = False, **kwargs: Any) -> None:
    """Fire hook ``name``: the one place every job fires from.

    A batch job (scan, the daemon, ``xmp write``) logs a plugin that raises and goes on;
    ``strict`` (the facade) lets the exception through, because a host that registered the hook
    wants to know.
    """
    if plugins is None:
        return
    if strict:
        getattr(plugins.hook, name)(**kwargs)
    else:
        notify(plugins, name, **kwargs)


def _content_changed(store: Store | None, path: str, new_hash: str | None, here: str | None = None) -> str | None:
    """Tell the store the photo's bytes changed under our write; an error line if it could not.
    ``here``: where this machine reads the file the store knows as ``path`` (default: ``path``)."""
    if store is None:
        return None
    here = here or path
    try:
        st = os.stat(here)
        store.content_changed(path, new_hash or content_hash(here), mtime=st.st_mtime, size=st.st_size)
    except (ClipcropError, OSError) as exc:
        return f"database not updated with the new content hash ({exc})"
    return None


def publish(store: Store | None, suggestion: Suggestion, policy: MetadataPolicy, *,
            plugins: pluggy.PluginManager | None = None, strict: bool = False, origin: str = "",
            locate: Callable[[str], str] | None = None) -> Outcome:
    """Write ``suggestion``'s crop metadata per ``policy`` and fire ``metadata_written`` once.

    After an embedded write the store (when given) files the photo under its new content hash,
    size and mtime. A write error comes back as ``Outcome.error`` (one line), or is raised when
    ``strict``; nothing is written for a failed suggestion or with the ``none`` policy.
    ``locate(path)``: where this machine reaches the photo the store knows as ``path`` (a queue
    worker whose NAS mount differs); default: the same path.
    """
    if not policy.writes or not suggestion.ok:
        return Outcome(suggestion.path, origin=origin)
    here = locate(suggestion.path) if locate is not None else suggestion.path
    # The writer names the sidecar after the suggestion's path: hand it the one this machine reaches.
    local = suggestion if here == suggestion.path else suggestion.replace(path=here)
    try:
        result = write_crop_metadata(here, local, mode=policy.mode, naming=policy.naming,
                                     aspects=list(policy.aspects) or None, keep_margin=policy.keep_margin)
    except (ClipcropError, OSError) as exc:
        if strict:
            raise
        msg = str(exc) if isinstance(exc, ClipcropError) else (exc.strerror or str(exc))
        return Outcome(suggestion.path, error=with_path(suggestion.path, msg), origin=origin)
    if result.mode_used == "embed":
        extra = _content_changed(store, suggestion.path, result.sha256, here)
        if extra:
            result.note = f"{result.note}; {extra}" if result.note else extra
    if result.changed:  # a "keep as is" writes nothing; it may clear an earlier clipcrop crop
        fire(plugins, "metadata_written", strict=strict, photo_path=suggestion.path,
             written=[str(result.path_written)], cleared=result.kept)
    return Outcome(suggestion.path, result, origin=origin)


def record_scored(store: Store, items: Sequence[Scored], policy: MetadataPolicy, *,
                  plugins: pluggy.PluginManager | None = None, strict: bool = False,
                  locate: Callable[[str], str] | None = None) -> list[Outcome]:
    """Store a batch of scored (or failed) photos in one transaction, then publish each one.

    ``items`` are ``(suggestion, content_hash, mtime, size)``. Returns one :class:`Outcome` per
    item (``error`` set where its metadata could not be written). ``photo_scored`` fires once per
    item, failures included, after its metadata was written. ``locate``: see :func:`publish`.
    """
    # The metadata is owed from the moment the scores are committed: a writer killed before it
    # is written leaves the hold behind, and the next pass that finds the photo unchanged writes
    # it from the stored scores (publish_held) instead of skipping it for good.
    owed = [s.path for s, _h, _m, _z in items if s.ok] if policy.writes else []
    store.hold_metadata(owed)
    store.record_suggestions(list(items))
    outcomes: list[Outcome] = []
    try:
        with deferred_dir_sync():
            for s, _h, _m, _z in items:
                outcomes.append(publish(store, s, policy, plugins=plugins, strict=strict, origin="scored", locate=locate))
                fire(plugins, "photo_scored", strict=strict, photo_path=s.path, suggestion=s)
    finally:
        # Only what was attempted (a write error is reported in its Outcome, not retried forever);
        # Ctrl-C mid-batch leaves the rest held.
        store.release_metadata(o.path for o in outcomes)
    return outcomes


def publish_held(store: Store, path: str, policy: MetadataPolicy, *, plugins: pluggy.PluginManager | None = None,
                 locate: Callable[[str], str] | None = None) -> Outcome | None:
    """Write the owed metadata of an unchanged, already scored photo from its stored scores.

    For a photo whose hold (:meth:`Store.hold_metadata`) outlived the batch that scored it: the
    writer was killed between committing the scores and writing the XMP. Returns the
    :class:`Outcome`, or ``None`` when nothing was owed or the stored scores are not current (the
    photo is then scored again, which writes it). ``locate``: see :func:`publish`.
    """
    from .xmp.fromstore import suggestion_from_store

    if not policy.writes:
        return None
    here = locate(path) if locate is not None else path
    stored = suggestion_from_store(store, path, local=here)
    if stored is None:
        return None
    with deferred_dir_sync():
        out = publish(store, stored, policy, plugins=plugins, origin="held", locate=locate)
    store.release_metadata([path])
    if out.error:
        log.warning("%s", out.error)
    return out


def record_failure(store: Store, path: str, reason: str, content_hash: str | None = None, *,
                   mtime: float | None = None, size: int | None = None, scorer: Any = None,
                   plugins: pluggy.PluginManager | None = None) -> None:
    """Store a photo that could not be scored and fire ``photo_scored`` for it (``ok`` False)."""
    store.record_failure(path, reason, content_hash, mtime=mtime, size=size)
    failed = Suggestion(path=str(path), ok=False, error=reason, scorer=getattr(scorer, "name", None))
    fire(plugins, "photo_scored", photo_path=str(path), suggestion=failed)


def clear(store: Store | None, path: str | os.PathLike[str], *, mode: str = "all", naming: str | None = None,
          plugins: pluggy.PluginManager | None = None, strict: bool = False) -> Outcome:
    """Remove clipcrop's metadata of one photo and fire ``metadata_written`` (``cleared``) once.

    Clearing embedded XMP rewrites the photo, so the store (when given) gets its new content hash.
    """
    p = os.fspath(path)
    try:
        cleared = clear_crop_metadata(p, mode=mode, naming=naming)
    except ClipcropError as exc:
        if strict:
            raise
        return Outcome(p, error=with_path(p, str(exc)))
    if not cleared and not os.path.lexists(p):
        # A typo must not look like success; a photo deleted earlier still gets its sidecar removed.
        return Outcome(p, error=with_path(p, "no such file"))
    out = Outcome(p, cleared=cleared)
    if any(os.path.abspath(c) == os.path.abspath(p) for c in cleared):
        extra = _content_changed(store, os.path.abspath(p), None)
        if extra:
            log.warning("%s: %s", p, extra)
    if cleared:
        fire(plugins, "metadata_written", strict=strict, photo_path=p, written=[str(c) for c in cleared], cleared=True)
    return out


def write_paths(paths: Iterable[str | os.PathLike[str]], policy: MetadataPolicy, *, source: str = "auto",
                store: Store | None = None, scorer_factory: Callable[[], Any] | None = None,
                aspects: Sequence[AspectRatio] = (), recursive: bool = True, batch_size: int = 8,
                plugins: pluggy.PluginManager | None = None) -> Iterator[Outcome]:
    """``clipcrop xmp write``: publish every photo under ``paths``; one :class:`Outcome` each.

    ``source``: ``db`` uses only stored suggestions, ``score`` always scores now, ``auto`` uses
    the store where it is current and scores the rest. Photos scored here are recorded in the
    store when there is one (so they are not scored again by the next scan). ``scorer_factory``
    is called at most once, and only when something needs scoring.
    """
    to_score: list[Path] = []
    chunk: list[Callable[[], Outcome]] = []

    def flush() -> list[Outcome]:
        # One folder fsync per chunk instead of one per photo; file data is still fsynced per file.
        with deferred_dir_sync():
            done = [job() for job in chunk]
        chunk.clear()
        return done

    mode = policy.mode if policy.writes else None
    for photo, stored, error in plan_writes(paths, store=store, aspects=aspects, source=source, recursive=recursive,
                                            mode=mode, naming=policy.naming):
        if stored is not None:
            chunk.append(lambda s=stored: publish(store, s, policy, plugins=plugins, origin="db"))
        elif error is not None:
            chunk.append(lambda p=photo, m=error: Outcome(str(p), error=m))
        else:
            to_score.append(photo)
        if len(chunk) >= CHUNK:
            yield from flush()
    yield from flush()
    if not to_score:
        return
    if scorer_factory is None:
        for photo in to_score:
            yield Outcome(str(photo), error=f"{photo}: not scored and no scorer available")
        return
    yield from _score_and_publish(to_score, scorer_factory(), aspects, policy, store=store,
                                  batch_size=batch_size, plugins=plugins)


def _score_and_publish(photos: list[Path], scorer: Any, aspects: Sequence[AspectRatio], policy: MetadataPolicy, *,
                       store: Store | None, batch_size: int, plugins: pluggy.PluginManager | None) -> Iterator[Outcome]:
    from itertools import chain

    from .suggest import suggest_paths
    from .xmp.writer import host_orientation

    # A photo whose host keeps its rotation in XMP (a sidecar's tiff:Orientation, no EXIF) is
    # scored in that frame, so the crop suits what the host shows.
    turned = {p: o for p in photos if policy.writes
              and (o := host_orientation(p, mode=policy.mode, naming=policy.naming)) is not None}
    batch: list[Suggestion] = []

    def flush() -> list[Outcome]:
        items = []
        for s in batch:
            if Path(s.path) in turned:
                # Scored in the host's XMP frame, not the EXIF one the database keeps boxes in
                # (export, review): published, not recorded.
                items.append(None)
                continue
            try:
                st = os.stat(s.path)
                items.append((s, content_hash(s.path), st.st_mtime, st.st_size))
            except (ClipcropError, OSError):
                items.append(None)
        done: list[Outcome] = []
        recorded = [it for it in items if it is not None] if store is not None else []
        if recorded:
            assert store is not None
            store.record_suggestions(recorded)  # type: ignore[arg-type]
        with deferred_dir_sync():
            for s in batch:
                if s.ok:
                    done.append(publish(store, s, policy, plugins=plugins, origin="scored"))
                else:
                    done.append(Outcome(s.path, error=with_path(s.path, s.error or "not scored"), origin="scored"))
                if store is not None:
                    fire(plugins, "photo_scored", photo_path=s.path, suggestion=s)
        batch.clear()
        return done

    plain = [p for p in photos if p not in turned]
    for s in chain(_suggest_turned(turned, scorer, aspects),
                   suggest_paths(plain, scorer, aspects, batch_size=batch_size, recursive=False)):
        batch.append(s)
        if len(batch) >= max(1, batch_size):
            yield from flush()
    if batch:
        yield from flush()


def _suggest_turned(photos: dict[Path, int], scorer: Any, aspects: Sequence[AspectRatio]) -> Iterator[Suggestion]:
    """Score each photo in the frame of the orientation its host's XMP gives (one at a time:
    such photos are rare)."""
    from .imaging import load_image
    from .suggest import failed, suggest_images
    from .xmp.orientation import reorient

    min_side = int(getattr(scorer, "min_side", 256) or 256)
    for photo, orientation in photos.items():
        try:
            loaded = reorient(load_image(photo, min_side=min_side), orientation)
            yield from suggest_images([loaded], scorer, aspects)
        except ClipcropError as exc:
            yield failed(photo, str(exc), scorer)
        except Exception as exc:  # noqa: BLE001 - one photo's scoring failure never stops the batch
            yield failed(photo, f"scoring failed ({type(exc).__name__}: {exc})", scorer)


def clear_paths(paths: Iterable[str | os.PathLike[str]], *, mode: str = "all", naming: str | None = None,
                recursive: bool = True, store: Store | None = None,
                plugins: pluggy.PluginManager | None = None) -> Iterator[Outcome]:
    """``clipcrop xmp clear``: remove clipcrop's metadata of every photo under ``paths``."""
    from .photofiles import iter_photo_paths

    for photo in iter_photo_paths(paths, recursive=recursive):
        yield clear(store, photo, mode=mode, naming=naming, plugins=plugins)
