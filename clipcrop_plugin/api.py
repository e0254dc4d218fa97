"""The Python API for host applications: one :class:`Library` object over the crop database.

A gallery app that wants crop suggestions without the CLI does::

    from clipcrop_plugin.api import Library

    with Library.open("sqlite:////home/me/.local/share/clipcrop/clipcrop.sqlite3") as lib:
        s = lib.suggest("/photos/IMG_1234.JPG", aspects=["1:1"])   # score now and store
        best = s.best("1:1")                                           # a results.Crop
        lib.record_label(s.path, "accept", aspect="1:1", rank=1)      # the user liked it
        lib.write_metadata(s.path)                                     # IMG_1234.xmp

Photos are named by database id or by path (``PhotoRef``). Everything returned is a plain
dataclass from :mod:`clipcrop_plugin.results` or :mod:`clipcrop_plugin.store`; errors are the
typed :mod:`clipcrop_plugin.errors` (one-line messages). The hooks of :mod:`clipcrop_plugin.hooks`
fire from here: ``photo_scored``, ``label_recorded``, ``metadata_written``. The HTTP server and
the CLI commands use this same object.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pluggy

from .config import Settings, load_settings
from .errors import ClipcropError, MetadataError, StoreError
from .hooks import get_plugin_manager
from .jobs import fire
from .results import Suggestion

if TYPE_CHECKING:  # the heavy modules load only when a method needs them
    from PIL import Image

    from .scoring.base import Scorer
    from .store import LabelRecord, PhotoDetail, PhotoSummary, Store

PhotoRef = Union[int, str, "os.PathLike[str]"]


class UnknownPhoto(ClipcropError):
    """The photo is not in the database, or its file is no longer on disk."""


@dataclass
class PhotoPage:
    """One page of :meth:`Library.photos`: ``total`` matches, ``items`` from ``offset`` on."""

    total: int
    offset: int
    limit: int
    items: list[PhotoSummary] = field(default_factory=list)


class Library:
    """A photo library's crop database plus the scorer that fills it.

    Open with :meth:`open`; one instance may be shared by threads (the store pools connections;
    the scorer is loaded once, on first use, and guarded by a lock because model inference is
    not re-entrant).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        scorer: Scorer | str | None = None,
        plugins: pluggy.PluginManager | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        # Default: the process-wide manager, so hooks registered there (or installed) see every Library.
        self.plugins = plugins if plugins is not None else get_plugin_manager()
        self._scorer: Scorer | None = None if scorer is None or isinstance(scorer, str) else scorer
        self._scorer_name = scorer if isinstance(scorer, str) else settings.scorer
        self._scorer_lock = threading.Lock()
        self._aspects_cache: tuple[float, list[str]] | None = None

    @classmethod
    def open(
        cls,
        db: str | None = None,
        *,
        settings: Settings | None = None,
        scorer: Scorer | str | None = None,
        plugins: pluggy.PluginManager | None = None,
    ) -> Library:
        """Open (creating and migrating if needed) the database ``db`` (SQLAlchemy URL or SQLite path).

        ``db`` defaults to ``$CLIPCROP_DB``, then the configured URL, then the SQLite file in the
        data folder. ``scorer``: a scorer name (``auto``, ``heuristic``, ...) or a ready
        :class:`~clipcrop_plugin.scoring.base.Scorer`; default: the configured one. ``plugins``: a
        pluggy manager for the hooks (default: :func:`clipcrop_plugin.hooks.get_plugin_manager`, which
        loads the ``clipcrop`` entry points once per process).
        """
        from .store import Store

        settings = settings if settings is not None else load_settings()
        return cls(Store.open(db, settings=settings), settings, scorer=scorer, plugins=plugins)

    def close(self) -> None:
        """Release the database connections."""
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring --------------------------------------------------------------------------------

    @property
    def scorer(self) -> Scorer:
        """The scorer, loaded on first use (``auto`` says once which one it picked)."""
        if self._scorer is None:
            from .scoring.registry import load_scorer

            with self._scorer_lock:
                if self._scorer is None:
                    s = self.settings
                    self._scorer = load_scorer(
                        self._scorer_name or "auto", settings=s, device=s.device, weights=s.weights or None
                    )
        return self._scorer

    def _aspects(self, aspects: Sequence[str] | None) -> list[Any]:
        from .candidates import parse_aspect

        return [parse_aspect(a) for a in (self.settings.aspects if aspects is None else aspects)]

    def suggest(self, path: str | os.PathLike[str], *, aspects: Sequence[str] | None = None,
                record: bool = True) -> Suggestion:
        """Score the photo file at ``path`` now; store the result unless ``record`` is False.

        ``aspects``: ratio sets such as ``["1:1", "16:9"]`` on top of the grid (default: the
        configured ones). A photo that cannot be read comes back with ``ok=False`` and its reason
        (and is recorded as failed, unless the path does not exist at all); nothing is raised for
        a bad photo.
        """
        from .hashing import content_hash
        from .suggest import failed, suggest_paths

        file = Path(path).expanduser().absolute()
        ratios = self._aspects(aspects)
        scorer = self.scorer
        with self._scorer_lock:
            suggestion = next(iter(suggest_paths([file], scorer, ratios, batch_size=1, recursive=False)),
                              None) or failed(file, f"{file}: not a photo", scorer)
        # A path that does not exist is the caller's typo, not a photo of the library: not recorded.
        if record and file.exists():
            from .jobs import MetadataPolicy, record_scored

            try:
                digest = content_hash(file)
                st = file.stat()
            except (ClipcropError, OSError) as exc:  # unreadable, or vanished since it was scored
                if suggestion.ok:
                    raise
                reason = str(exc) if isinstance(exc, ClipcropError) else (suggestion.error or f"{file}: vanished")
                self.store.record_failure(str(file), reason)
            else:
                self._aspects_cache = None
                # The job layer stores it and fires photo_scored (strict: a host's hook error surfaces).
                record_scored(self.store, [(suggestion, digest, st.st_mtime, st.st_size)], MetadataPolicy("none"),
                              plugins=self.plugins, strict=True)
                return suggestion
            self._aspects_cache = None
        fire(self.plugins, "photo_scored", strict=True, photo_path=str(file), suggestion=suggestion)
        return suggestion

    def suggest_image(self, image: Image.Image, *, aspects: Sequence[str] | None = None,
                      name: str = "<image>") -> Suggestion:
        """Score a PIL image held in memory (not stored; the host keeps it). EXIF orientation of
        ``image`` is applied first, as for files."""
        from .imaging import _load_opened
        from .suggest import suggest_images

        # The same intake as for files (orientation, mode, working size); imaging has no public
        # entry point for an already-open image.
        scorer = self.scorer
        loaded = _load_opened(image, Path(name), int(getattr(scorer, "min_side", 256) or 256))
        loaded.info.path = name
        with self._scorer_lock:
            suggestion = suggest_images([loaded], scorer, self._aspects(aspects))[0]
        suggestion.path = name
        fire(self.plugins, "photo_scored", strict=True, photo_path=name, suggestion=suggestion)
        return suggestion

    def score_photo(self, photo: PhotoRef, *, aspects: Sequence[str] | None = None) -> Suggestion:
        """Score a photo that is already in the database again (e.g. with new aspect sets)."""
        return self.suggest(self._path(photo), aspects=aspects)

    # -- reading --------------------------------------------------------------------------------

    def _ref(self, photo: PhotoRef) -> Any:
        try:
            return self.store.resolve_photo(photo if isinstance(photo, int) else os.fspath(photo))
        except StoreError as exc:
            raise UnknownPhoto(str(exc)) from None

    def _path(self, photo: PhotoRef) -> Path:
        return Path(self._ref(photo).path)

    def photos(self, *, sort: str = "improvement", limit: int = 50, offset: int = 0,
               **filters: Any) -> PhotoPage:
        """Photos matching ``filters`` (the fields of :class:`clipcrop_plugin.store.QueryFilters`,
        as ``clipcrop query`` takes them), sorted and paginated, with their selected crop."""
        from .store import QueryFilters

        f = QueryFilters(**{k: v for k, v in filters.items() if v is not None})
        items = self.store.query(f, sort=sort, limit=limit, offset=offset)
        return PhotoPage(total=self.store.count(f, sort=sort), offset=offset, limit=limit, items=items)

    def count(self, **filters: Any) -> int:
        """How many photos match ``filters`` (all photos except gone ones by default)."""
        from .store import QueryFilters

        return self.store.count(QueryFilters(**{k: v for k, v in filters.items() if v is not None}))

    def photo(self, photo: PhotoRef) -> PhotoDetail:
        """Everything stored about one photo (every candidate of its active run, labels, runs)."""
        ref = self._ref(photo)
        return self.store.photo_detail(ref.id)

    def suggestion(self, photo: PhotoRef) -> Suggestion | None:
        """The stored suggestion of a photo as a :class:`~clipcrop_plugin.results.Suggestion`
        (what :meth:`suggest` returned when it was scored), or None if it was never scored.

        The file's header is read again so that orientation and stored size are exact; raises
        :class:`MetadataError` if the file changed since it was scored (or cannot be read).
        """
        from .xmp.fromstore import suggestion_from_store

        detail = self.photo(photo)
        if detail.run is None or not detail.candidates:
            return None
        rebuilt = suggestion_from_store(self.store, detail.photo.path)
        if rebuilt is None:
            raise MetadataError(f"{detail.photo.path} changed since it was scored (or cannot be read); "
                                "score it again first")
        return rebuilt

    def labels(self, photo: PhotoRef | None = None, *, kinds: Sequence[str] | None = None) -> list[LabelRecord]:
        """Recorded labels (oldest first), of one photo or of the whole library."""
        photo_id = self._ref(photo).id if photo is not None else None
        return self.store.labels(photo_id=photo_id, kinds=kinds)

    def aspects(self) -> list[str]:
        """Candidate sets present in the library's active runs (``grid`` first, then ratios)."""
        cached = self._aspects_cache
        if cached is not None and time.monotonic() - cached[0] < 10.0:
            return cached[1]
        found = self.store.active_aspects()
        self._aspects_cache = (time.monotonic(), found)
        return found

    def photo_file(self, photo: PhotoRef) -> tuple[Path, str]:
        """The file of a photo known to the database and its content hash (the thumbnail key).

        Raises :class:`UnknownPhoto` for an unknown photo or one whose file is gone/offline.
        """
        ref = self._ref(photo)
        path = Path(ref.path)
        if ref.status == "gone" or not path.is_file():
            raise UnknownPhoto(f"photo {ref.id} is not on disk any more ({path.name})")
        if ref.content_hash:
            return path, ref.content_hash
        from .hashing import content_hash

        return path, content_hash(path)

    def daemon_status(self) -> dict[str, Any]:
        """The folder daemon's last status (``running`` says whether it is alive).

        Raises :class:`ClipcropError` when no daemon has run with this data folder.
        """
        from .daemon.status import read_status

        return read_status()

    # -- writing --------------------------------------------------------------------------------

    def use_model(self, name: str) -> str:
        """Switch the model version in use; ``clipcrop models use NAME`` and the trainer's
        ``--activate`` both end here, so the model folder's pins and the database's active
        version (``Store.active_model_version()``: ``clipcrop models``, the API, the review page
        and the daemon) always agree.

        ``name``: an imported checkpoint (clipcropping), a personalization of the heuristic or
        zeroshot scorer, or ``heuristic`` / ``zeroshot`` for that scorer's built-in weights.
        Returns a one-line description of the switch.
        """
        from .model.checkpoints import list_checkpoints, set_active
        from .scoring import learned

        model_dir = self.settings.resolved_model_dir()
        store = self.store
        if learned.is_version_name(model_dir, name):
            if name in learned.SCORERS:
                try:
                    was = learned.active_version(model_dir, name)
                except ClipcropError:
                    was = None
                line = learned.set_active_version(model_dir, name)
                base_sha = was.parent_sha256 if was is not None else (
                    learned.heuristic_base_hash() if name == "heuristic" else None)
                if base_sha is None:
                    return line  # nothing was personalized: the database has nothing to switch
                vid = store.register_model_version(f"{name}-built-in" if name == "heuristic" else f"{name}-base",
                                                   was.provenance.get("parent", "built in") if was else "built in",
                                                   base_sha, data_summary={"scorer": name, "base": True})
            else:
                pw = learned.read_version(learned.personal_dir(model_dir) / Path(name).with_suffix(".safetensors").name)
                line = learned.set_active_version(model_dir, name)
                parent = store.register_model_version(
                    f"{pw.scorer}-built-in" if pw.scorer == "heuristic" else f"{pw.scorer}-base",
                    str(pw.provenance.get("parent", "built in")), pw.parent_sha256 or learned.heuristic_base_hash(),
                    data_summary={"scorer": pw.scorer, "base": True})
                data = pw.provenance.get("data")
                vid = store.register_model_version(pw.name, str(pw.path), pw.sha256, parent_id=parent,
                                                   data_summary=data if isinstance(data, dict) else None,
                                                   metrics=pw.provenance.get("metrics"))
        else:
            info = set_active(model_dir, name)
            line = f"clipcropping now uses {info.name} (sha256 {info.sha256[:12]})"
            parent_id = None
            if info.parent_sha256:
                parent_id = next((v.id for v in store.model_versions() if v.sha256 == info.parent_sha256), None)
                if parent_id is None:  # the parent's file is in the model folder: register it too
                    p = next((c for c in list_checkpoints(model_dir) if c.sha256 == info.parent_sha256), None)
                    if p is not None:
                        parent_id = store.register_model_version(p.name, str(p.path), p.sha256)
            prov = info.provenance or {}
            data, metrics = prov.get("data"), prov.get("metrics")
            vid = store.register_model_version(info.name, str(info.path), info.sha256, parent_id=parent_id,
                                               data_summary=data if isinstance(data, dict) else None,
                                               metrics=metrics if isinstance(metrics, dict) else None)
        store.set_active_model(vid)
        return line

    def record_label(
        self,
        photo: PhotoRef,
        kind: str,
        *,
        aspect: str | None = None,
        rank: int | None = None,
        other_rank: int | None = None,
        box: Sequence[int] | None = None,
        other_box: Sequence[int] | None = None,
        source: str = "api",
    ) -> LabelRecord:
        """Record what the user thought of a crop.

        ``accept``/``reject``: candidate ``rank`` of set ``aspect`` (default: the best crop), or an
        explicit ``box``; ``box``: a user-drawn/adjusted box (upright pixels, x2/y2 exclusive);
        ``prefer``: candidate ``rank`` (or ``box``) preferred over ``other_rank`` (or ``other_box``).
        These feed ``clipcrop-train personalize``.
        """
        ref = self._ref(photo)
        label_id = self.store.add_label(
            ref.id, kind, rank=rank, box=tuple(box) if box is not None else None,  # type: ignore[arg-type]
            other=tuple(other_box) if other_box is not None else None,  # type: ignore[arg-type]
            aspect=aspect, other_rank=other_rank, source=source,
        )
        saved = next(x for x in self.store.labels(photo_id=ref.id) if x.id == label_id)
        fire(self.plugins, "label_recorded", strict=True, photo_path=ref.path, label=saved.to_dict())
        return saved

    def write_metadata(self, photo: PhotoRef, *, aspect: str | None = None, embed: bool | None = None,
                       naming: str | None = None) -> list[Path]:
        """Write the stored best crop (of ``aspect``) as XMP: a sidecar (``naming`` ``ext`` ->
        ``IMG.JPG.xmp``, ``base`` -> ``IMG.xmp``) or, with ``embed``, into the JPEG/PNG itself.
        Returns the files written. After an embedded write the database records the photo's new
        content hash, so the next scan does not score it again (the job layer's rule)."""
        from .jobs import MetadataPolicy, publish

        suggestion = self.suggestion(photo)
        if suggestion is None:
            raise MetadataError(f"{self._path(photo)} has no scored crops yet")
        policy = MetadataPolicy.from_settings(self.settings, embed=embed, naming=naming,
                                              aspects=[aspect] if aspect else None)
        if aspect is None:
            policy = MetadataPolicy(policy.mode, policy.naming, keep_margin=policy.keep_margin)  # the best crop over all sets, as before
        out = publish(self.store, suggestion, policy, plugins=self.plugins, strict=True)
        return [out.result.path_written] if out.result is not None else []

    def clear_metadata(self, photo: PhotoRef, *, naming: str | None = None) -> list[Path]:
        """Remove clipcrop's crop from the photo's sidecars and embedded XMP (other metadata
        stays); returns the files changed or deleted."""
        from .jobs import clear

        out = clear(self.store, self._path(photo), naming=naming, plugins=self.plugins, strict=True)
        return list(out.cleared or [])
