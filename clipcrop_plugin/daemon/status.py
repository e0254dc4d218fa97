"""The daemon's status file: what ``clipcrop status`` reads.

One JSON document in the data folder, replaced atomically about once a second, so a reader
never sees half of it. Liveness is not trusted from the file alone: after ``kill -9`` the file
stays behind, so readers check the pid (and its start time, against pid reuse).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..config import data_dir
from ..errors import ClipcropError
from ..safeio import atomic_write, new_file_mode, reason, show

STATUS_NAME = "daemon-status.json"
LOCK_NAME = "daemon.lock"


def status_path(directory: Path | None = None) -> Path:
    """Where the status file lives (``<data dir>/daemon-status.json``)."""
    return (directory or data_dir()) / STATUS_NAME


def write_status(doc: dict[str, Any], path: Path) -> None:
    """Replace ``path`` with ``doc`` atomically (temp file in the same folder, then rename).

    Never through a symbolic link; not fsynced (rewritten every second, and a lost one only
    means a second-old status). Raises :class:`ClipcropError` with a one-line reason.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8")
    atomic_write(path, data, sync=False, error=ClipcropError)


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or ``None`` if there is no such process."""
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def read_status(path: Path | None = None) -> dict[str, Any]:
    """The last status the daemon wrote, plus ``running`` (is that daemon process alive).

    Raises :class:`ClipcropError` if no daemon has ever written a status file here.
    """
    path = path or status_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ClipcropError(f"no daemon status at {path}: clipcrop watch has not run with this data folder") from None
    except (OSError, ValueError) as exc:
        raise ClipcropError(f"cannot read daemon status {path}: {exc}") from exc
    pid = int(doc.get("pid") or 0)
    started = process_start_time(pid) if pid > 0 else None
    # The pid must exist and must have started no later than the daemon said it did (a
    # recycled pid belongs to a younger process).
    running = bool(
        started is not None
        and doc.get("state") not in ("stopped",)
        and started <= float(doc.get("process_started_at") or started) + 1.0
    )
    doc["running"] = running
    doc["status_age_s"] = round(max(0.0, time.time() - float(doc.get("updated_at") or 0.0)), 3)
    return doc


class DaemonLock:
    """An exclusive lock on the data folder so two daemons never score into one database.

    ``flock`` is released by the kernel when the process dies, even by ``kill -9``.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or data_dir()) / LOCK_NAME
        self._fh: Any = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`ClipcropError` naming the daemon that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_NOFOLLOW: the pid is written (and the file truncated) here, never through a link
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), new_file_mode())
        except OSError as exc:
            raise ClipcropError(f"cannot open the daemon lock {show(self.path)}: {reason(exc)}") from None
        fh = open(fd, "r+", encoding="utf-8")  # noqa: SIM115 - held for the daemon's life
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the status file's pid check still warns users
            self._fh = fh
            return
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ClipcropError(f"another clipcrop watch is running on this data folder (pid {holder})") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
