"""Running the clipcrop CLI in a child process, with stderr on a real pseudo-terminal or a pipe
(for what is drawn only on a terminal: progress bars)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

from support import ROOT

CLI = [sys.executable, "-c", "from clipcrop_plugin.cli.main import cli; cli()"]


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def on_terminal(*args: str) -> tuple[int, str, bytes]:
    """Run clipcrop with stderr on a pseudo-terminal: (exit status, stdout, what the terminal got)."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=secondary, env=_env())
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
        out = proc.communicate(timeout=120)[0].decode()
    finally:
        os.close(primary)
    return proc.returncode, out, drawn


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=_env())
