"""The README documents every command and subcommand of `clipcrop` and `clipcrop-train`, and
every plugin hook (in the spirit of sqlite-utils' documentation tests); `--help` has an example;
docs/ARCHITECTURE.md names every module of `clipcrop_plugin/` and `trainer/`."""

from __future__ import annotations

import re

import click
import pytest
from support import ROOT
from support.docs import ARCHITECTURE, architecture_rows, package_modules

from clipcrop_plugin.cli.main import COMMANDS, cli
from clipcrop_plugin.hooks import ClipcropSpecs
from trainer.cli import cli as train_cli

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str) -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    out: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append((f"{prefix} {name}", cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, f"{prefix} {name}"))
    return out


ALL = _commands(cli, "clipcrop") + _commands(train_cli, "clipcrop-train")


def test_the_command_table_is_the_group() -> None:
    assert set(COMMANDS) <= set(cli.list_commands(click.Context(cli)))


@pytest.mark.parametrize("name", [name for name, _ in ALL])
def test_every_command_is_in_the_readme(name: str) -> None:
    # "clipcrop xmp write" may be written as `clipcrop xmp write` or in a heading "`clipcrop xmp write|clear`".
    words = name.split()
    pattern = r"\b" + r"\s+".join(re.escape(w) for w in words[:-1]) + r"\s+(?:\S*\|)?" + re.escape(words[-1]) + r"\b"
    assert re.search(pattern, README), f"README does not mention `{name}`"


@pytest.mark.parametrize("hook", [n for n in vars(ClipcropSpecs) if not n.startswith("_")])
def test_every_hook_is_in_the_readme(hook: str) -> None:
    assert f"{hook}(" in README or f"`{hook}`" in README, f"README does not document the {hook} hook"


def test_every_command_has_help_with_an_example() -> None:
    for name, cmd in ALL:
        if isinstance(cmd, click.Group) and name.count(" ") > 0 and cmd.commands:
            continue
        assert cmd.help and "Example" in cmd.help, f"`{name} --help` has no example"


def test_every_module_has_a_row_in_the_architecture_table() -> None:
    rows = architecture_rows()
    missing = [m for m in package_modules() if m not in rows]
    assert missing == [], f"add a row for each to docs/ARCHITECTURE.md's module table: {missing}"
    stale = [m for m in rows if not (ROOT / m).is_file()]
    assert stale == [], f"docs/ARCHITECTURE.md names modules that are gone: {stale}"
    assert all(job.strip() for _stage, job in rows.values())


def test_the_architecture_picture_is_there() -> None:
    doc = ARCHITECTURE.read_text(encoding="utf-8")
    assert "](images/architecture.svg)" in doc and (ROOT / "docs" / "images" / "architecture.svg").is_file()
