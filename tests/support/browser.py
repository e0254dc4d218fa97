"""Driving the review page in a real headless Chromium (Debian ``chromium``, through Playwright)."""

from __future__ import annotations

import os
import time
from pathlib import Path

CHROMIUM = Path(os.environ.get("CLIPCROP_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def wait_js(page, fn: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    """Poll a JS function until it returns something truthy. (Playwright's wait_for_function
    evaluates strings with eval, which the page's Content-Security-Policy rightly forbids.)"""
    return wait_until(lambda: page.evaluate(fn), timeout)


def wait_until(predicate, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy, and return that; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
