"""Observers: the native one (inotify, FSEvents, ...) by default, polling where it must.

Polling is chosen for a whole tree when the user asks (``--poll``), when the tree is on a
network file system (``/proc/mounts`` says nfs, cifs, sshfs, ...: inotify never sees writes
made by other machines), or when the kernel refuses more inotify
watches (``ENOSPC``: ``fs.inotify.max_user_watches``; ``EMFILE``: ``max_user_instances``). The
latter is one warning line and a fallback, never a crash; the periodic rescan covers anything
either observer misses.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

log = logging.getLogger("clipcrop.daemon")

# errno values that mean "no more inotify resources", not "this folder is broken".
WATCH_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


# File systems whose changes made elsewhere (another machine, a FUSE backend) never reach
# inotify: they are polled. Compared without a "fuse." prefix.
NETWORK_FS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "ncpfs",
    "sshfs", "rclone", "davfs", "davfs2", "s3fs", "gcsfuse", "webdav",
})


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) from /proc/mounts; empty where there is none (macOS, Windows)."""
    try:
        with open("/proc/mounts", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 3:
            # /proc/mounts escapes spaces and tabs in mount points as octal.
            out.append((parts[1].replace("\\040", " ").replace("\\011", "\t"), parts[2]))
    return out


def network_fs(folder: str) -> str | None:
    """The network file system type ``folder`` lives on (``"nfs4"``, ``"cifs"``, ...), or None."""
    real = os.path.realpath(folder)
    best = ("", "")
    for mnt, fstype in _mounts():
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, fstype)
    fstype = best[1].lower()
    name = fstype[5:] if fstype.startswith("fuse.") else fstype
    return fstype if name in NETWORK_FS else None


def native_observer_factory() -> BaseObserver:
    """The platform's best observer (a module-level hook so tests can replace it)."""
    return Observer()


class Watcher:
    """Schedules folders on a native observer, falling back to a polling one per folder."""

    def __init__(
        self,
        handler_for: Callable[[str], FileSystemEventHandler],
        *,
        poll: bool = False,
        poll_interval: float = 1.0,
    ) -> None:
        self._handler_for = handler_for
        self.poll = poll
        self.poll_interval = poll_interval
        self._native: BaseObserver | None = None
        self._polling: BaseObserver | None = None
        self._watches: dict[str, tuple[BaseObserver, ObservedWatch]] = {}
        self.modes: dict[str, str] = {}  # folder -> "native" | "polling"

    def _polling_observer(self) -> BaseObserver:
        if self._polling is None:
            self._polling = PollingObserver(timeout=self.poll_interval)
            self._polling.daemon = True
            self._polling.start()
        return self._polling

    def _native_observer(self) -> BaseObserver:
        if self._native is None:
            self._native = native_observer_factory()
            self._native.daemon = True
            # Started before scheduling: a started observer starts each emitter inside
            # schedule(), so a watch-limit error surfaces here, where we can fall back.
            self._native.start()
        return self._native

    def watch(self, folder: str) -> str:
        """Watch ``folder`` recursively; returns the mode used (``"native"`` or ``"polling"``)."""
        self.unwatch(folder)
        handler = self._handler_for(folder)
        mode = "polling" if self.poll else "native"
        fstype = None if self.poll else network_fs(folder)
        if fstype is not None:
            log.info("%s is on %s; polling it (inotify does not see changes made by other machines)", folder, fstype)
            mode = "polling"
        if mode == "native":
            try:
                obs = self._native_observer()
                self._watches[folder] = (obs, obs.schedule(handler, folder, recursive=True))
            except OSError as exc:
                if exc.errno not in WATCH_LIMIT_ERRNOS:
                    raise
                log.warning(
                    "cannot watch %s natively (%s); polling it instead. Raise fs.inotify.max_user_watches "
                    "(ENOSPC) or fs.inotify.max_user_instances (EMFILE) to avoid this",
                    folder,
                    os.strerror(exc.errno) if exc.errno else exc,
                )
                mode = "polling"
        if mode == "polling":
            obs = self._polling_observer()
            self._watches[folder] = (obs, obs.schedule(handler, folder, recursive=True))
        self.modes[folder] = mode
        return mode

    def unwatch(self, folder: str) -> None:
        """Stop watching ``folder`` (no error if it was not watched or its emitter died)."""
        entry = self._watches.pop(folder, None)
        self.modes.pop(folder, None)
        if entry is None:
            return
        obs, watch = entry
        try:
            obs.unschedule(watch)
        except (KeyError, OSError) as exc:
            log.debug("unschedule %s: %s", folder, exc)

    def stop(self, timeout: float = 2.0) -> None:
        """Stop and join every observer."""
        for obs in (self._native, self._polling):
            if obs is not None:
                obs.stop()
        for obs in (self._native, self._polling):
            if obs is not None and obs.is_alive():
                obs.join(timeout)
        self._native = self._polling = None
        self._watches.clear()
