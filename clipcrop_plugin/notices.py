"""Advice worth repeating now and then, not on every run.

A long hint ("no CLIP weights found, ...") printed on every command trains people to skip
stderr. :func:`say_once_a_day` logs a notice as a warning the first time in a day (per data
folder) and at INFO level after that, so ``-v`` still shows it; ``clipcrop models`` always says it.
"""

from __future__ import annotations

import json
import logging
import time

from .config import data_dir
from .errors import ClipcropError
from .safeio import atomic_write

DAY_S = 24 * 3600
_FILE = "notices.json"


def say_once_a_day(log: logging.Logger, key: str, message: str, *args: object) -> bool:
    """Log ``message`` as a warning if ``key`` was not warned about in the last day, else at INFO.

    Returns whether it was a warning. A data folder that cannot be written (read-only home,
    full disk) gets the warning every time rather than never.
    """
    path = data_dir() / _FILE
    now = time.time()
    try:
        seen = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(seen, dict):
            seen = {}
    except (OSError, ValueError):
        seen = {}
    last = seen.get(key)
    if isinstance(last, (int, float)) and now - last < DAY_S:
        log.info(message, *args)
        return False
    log.warning(message, *args)
    seen[key] = now
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(seen).encode("utf-8"), sync=False, error=ClipcropError)
    except (OSError, ClipcropError):
        pass  # a hint shown twice is better than a hint that stops the command
    return True
