"""Hooks a host application (or any installed package) can implement to follow clipcrop's work.

A plugin is any object or module with functions decorated by :data:`hookimpl`. Installed
packages register one through the ``clipcrop`` entry-point group (the same convention as
sqlite-utils and datasette)::

    # pyproject.toml of the host's package
    [project.entry-points.clipcrop]
    mygallery = "mygallery.clipcrop_hooks"

    # mygallery/clipcrop_hooks.py
    from clipcrop_plugin.hooks import hookimpl

    @hookimpl
    def label_recorded(photo_path, label):
        refresh_thumbnail(photo_path)

A host embedding :class:`clipcrop_plugin.api.Library` can also pass its own plugin manager or
call ``library.plugins.register(obj)``. The facade fires the hooks; exceptions raised by a hook
implementation propagate to the caller, because a host that registered a hook wants to know.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import pluggy

log = logging.getLogger("clipcrop.hooks")

PROJECT = "clipcrop"
ENTRY_POINT_GROUP = "clipcrop"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class ClipcropSpecs:
    """The hook specifications. Implementations may accept any subset of the arguments."""

    @hookspec
    def photo_scored(self, photo_path: str, suggestion: Any) -> None:
        """A photo was scored (``suggestion`` is a :class:`clipcrop_plugin.results.Suggestion`).

        Fired for every scored photo, including ones that failed (``suggestion.ok`` is False).
        """

    @hookspec
    def label_recorded(self, photo_path: str, label: dict[str, Any]) -> None:
        """The user accepted, rejected, adjusted or compared crops of ``photo_path``.

        ``label`` is a dict with at least ``kind`` (``accept``, ``reject``, ``box``, ``pairwise``),
        ``box`` (upright pixels or None), ``source`` and ``photo_id``.
        """

    @hookspec
    def metadata_written(self, photo_path: str, written: list[str], cleared: bool) -> None:
        """XMP crop metadata of ``photo_path`` was written (or cleared) in the files ``written``."""

    @hookspec
    def register_commands(self, cli: Any) -> None:
        """Add click commands to the ``clipcrop`` group (``cli`` is the click group)."""


_default: pluggy.PluginManager | None = None


def make_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A new plugin manager with clipcrop's hook specs, plus installed plugins when asked.

    A plugin that fails to import is skipped with one warning: a broken third-party package must
    not stop the CLI or the daemon.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(ClipcropSpecs)
    if load_entrypoints:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                pm.register(ep.load(), name=ep.name)
            except Exception as exc:  # noqa: BLE001 - any failure of foreign code
                log.warning("skipping clipcrop plugin %r (%s): %s: %s", ep.name, ep.value, type(exc).__name__, exc)
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created (and entry points loaded) on first use."""
    global _default
    if _default is None:
        _default = make_plugin_manager()
    return _default


def add_plugin_commands(cli: Any) -> None:
    """Let installed plugins add their commands to the ``clipcrop`` group (``register_commands``)."""
    get_plugin_manager().hook.register_commands(cli=cli)


def notify(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> None:
    """Fire hook ``name`` for a batch job: a plugin that raises is logged and the job goes on.
    Kept for plugins and scripts; clipcrop itself fires through :func:`clipcrop_plugin.jobs.fire`."""
    try:
        getattr(pm.hook, name)(**kwargs)
    except Exception as exc:  # noqa: BLE001 - foreign code must not stop a batch
        log.warning("plugin hook %s failed for %s: %s", name, kwargs.get("photo_path", "?"), exc)
