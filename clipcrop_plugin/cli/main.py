"""The ``clipcrop`` command group.

Commands live one per module and are imported only when run, so ``clipcrop --help`` and the
fast commands never pay for importing torch.

Errors are handled here, once, for every command: a :class:`ClipcropError` becomes
``error: reason`` with its exit code; anything unexpected becomes one line plus a hint to run
with ``--debug``, which shows the traceback (and Python warnings) instead.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import ClipcropError

# command name -> "module:attribute". One line per command; keep sorted by name.
COMMANDS: dict[str, str] = {
    "db": "clipcrop_plugin.cli.db:db",
    "export": "clipcrop_plugin.cli.export:export",
    "label": "clipcrop_plugin.cli.label:label",
    "models": "clipcrop_plugin.cli.models:models",
    "query": "clipcrop_plugin.cli.query:query",
    "scan": "clipcrop_plugin.cli.scan:scan",
    "serve": "clipcrop_plugin.cli.serve:serve",
    "show": "clipcrop_plugin.cli.show:show",
    "status": "clipcrop_plugin.cli.status:status",
    "suggest": "clipcrop_plugin.cli.suggest:suggest",
    "watch": "clipcrop_plugin.cli.watch:watch",
    "worker": "clipcrop_plugin.cli.worker:worker",
    "xmp": "clipcrop_plugin.cli.xmp:xmp",
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def __init__(self, *args: object, lazy: dict[str, str] | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; its failures end as one ``error:`` line (tracebacks with ``--debug``)."""
        from .params import exit_code_for, fail

        try:
            return super().invoke(ctx)
        except click.NoSuchOption as exc:
            # "clipcrop suggest -dash.jpg": a file whose name starts with "-" reads as an option.
            name = next((a for a in sys.argv[1:] if exc.option_name and a.startswith(exc.option_name)
                         and os.path.lexists(a)), None)
            if name is not None:
                sub = next((a for a in sys.argv[1:] if a in self.list_commands(ctx)), "CMD")
                exc.message += f" (a file whose name starts with '-' goes after --: clipcrop {sub} -- {name})"
            raise
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ClipcropError as exc:
            if debug_enabled(ctx):
                raise
            fail(str(exc), exit_code_for(exc))
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            fail(f"{describe_unexpected(exc)} (run with --debug for the traceback)")


def debug_enabled(ctx: click.Context | None = None) -> bool:
    """``--debug`` on the command line or ``CLIPCROP_DEBUG=1`` in the environment."""
    root = ctx.find_root() if ctx is not None else None
    return bool(root is not None and root.params.get("debug")) or os.environ.get("CLIPCROP_DEBUG", "") not in ("", "0")


def describe_unexpected(exc: BaseException) -> str:
    """One line for an exception clipcrop did not expect: its type and first message line."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.filename is not None:
        from ..safeio import reason, show

        return f"{show(exc.filename)}: {reason(exc)}"
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")


def quiet_warnings(debug: bool) -> None:
    """Keep library warnings (Pillow's TIFF tags, torch's pickle notes) out of the one-line output.

    They go to the ``clipcrop.warnings`` logger at INFO (shown with ``-v``); ``--debug`` leaves
    Python's own warning display alone.
    """
    if debug:
        return
    logger = logging.getLogger("clipcrop.warnings")

    def _log(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: object = None, line: str | None = None) -> None:
        logger.info("%s: %s", category.__name__, " ".join(str(message).split()))

    warnings.showwarning = _log


def configure_logging(verbose: int) -> None:
    """Log to stderr, one line per record, in a form journald keeps readable."""
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("clipcrop")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="clipcrop")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show the traceback of an unexpected error, and Python warnings.")
def cli(verbose: int, debug: bool) -> None:
    """Aesthetic crop suggestions for your photo library.

    \b
    Example:
      clipcrop suggest ~/Pictures --aspect 1:1 --top 3
    """
    configure_logging(verbose + (2 if debug else 0))
    quiet_warnings(debug or debug_enabled())


# Installed plugins (entry-point group "clipcrop", see clipcrop_plugin.hooks) may add commands.
from ..hooks import add_plugin_commands  # noqa: E402

add_plugin_commands(cli)


if __name__ == "__main__":  # python -m clipcrop_plugin.cli.main
    cli()
