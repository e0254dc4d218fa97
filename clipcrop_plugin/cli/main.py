"""The ``clipcrop`` command group.

Commands live one per module and are imported only when run, so ``clipcrop --help`` and the
fast commands never pay for importing torch.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from .. import __version__

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
def cli(verbose: int) -> None:
    """Aesthetic crop suggestions for your photo library.

    \b
    Example:
      clipcrop suggest ~/Pictures --aspect 1:1 --top 3
    """
    configure_logging(verbose)


# Installed plugins (entry-point group "clipcrop", see clipcrop_plugin.hooks) may add commands.
from ..hooks import add_plugin_commands  # noqa: E402

add_plugin_commands(cli)
