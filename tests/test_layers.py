"""Data flows one way: no module imports a module of a later stage (imports inside functions and
``TYPE_CHECKING`` blocks count too; a lazy import is still a dependency).

    file -> image -> subjects/candidates -> model -> scorer -> store -> metadata (xmp, export,
    preview) -> jobs -> daemon/api -> server/cli;  trainer may import clipcrop_plugin, never the reverse.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("clipcrop_plugin", "trainer")

# Shared leaf modules: importable from every stage (they import no stage themselves).
SHARED = frozenset({
    "clipcrop_plugin", "clipcrop_plugin.errors", "clipcrop_plugin.results", "clipcrop_plugin.elements",
    "clipcrop_plugin.config", "clipcrop_plugin.hashing", "clipcrop_plugin.hooks", "clipcrop_plugin.xmp.atomic",
    "clipcrop_plugin.extras", "clipcrop_plugin.notices", "clipcrop_plugin.safeio", "clipcrop_plugin.batching",
})

# The stages in flow order; a module may import its own stage, earlier ones and SHARED. The
# longest matching prefix decides a module's stage.
STAGES: dict[str, int] = {
    "clipcrop_plugin.photofiles": 0,  # file
    "clipcrop_plugin.imaging": 1,  # image
    "clipcrop_plugin.raw": 1,  # camera RAW intake (LibRaw), called by imaging
    "clipcrop_plugin.heif": 1,  # HEIF thumbnails, called by imaging
    "clipcrop_plugin.subjects": 2,
    "clipcrop_plugin.facenet": 2,  # MTCNN faces, called by subjects
    "clipcrop_plugin.candidates": 2,
    "clipcrop_plugin.model": 3,
    "clipcrop_plugin.scoring": 4,  # scorer
    "clipcrop_plugin.suggest": 4,  # the pipeline that runs the scorer
    "clipcrop_plugin.workers": 4,  # the same pipeline in worker processes
    "clipcrop_plugin.guard": 4,  # the subject guard, applied to any scorer's scores
    "clipcrop_plugin.store": 5,
    "clipcrop_plugin.settle": 5,  # decisions over stored photos (unchanged, relinked, copied, gone)
    "clipcrop_plugin.xmp": 6,  # metadata
    "clipcrop_plugin.export": 6,
    "clipcrop_plugin.preview": 6,
    "clipcrop_plugin.jobs": 7,
    "clipcrop_plugin.scan": 7,
    "clipcrop_plugin.taskqueue": 7,  # scan's jobs on many machines
    "clipcrop_plugin.daemon": 8,
    "clipcrop_plugin.api": 8,
    "clipcrop_plugin.server": 9,
    "clipcrop_plugin.cli": 9,
    "trainer": 10,
}

# Earlier stages a stage still may not import: the store and the metadata stage take results
# (``results.Suggestion``), never the scorer or the model that made them (no torch there).
SKIPPED: dict[int, frozenset[int]] = {5: frozenset({3, 4}), 6: frozenset({3, 4})}

# Known back-edges owned by other engineers, each to be removed by its owner; the integrator
# empties this list. Keep it explicit: (importer, imported).
ALLOWED: set[tuple[str, str]] = set()  # issue 12's model.inventory -> scoring.registry edge is gone


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def stage(module: str) -> int | None:
    if module in SHARED:
        return None
    best = max((p for p in STAGES if module == p or module.startswith(p + ".")), key=len, default=None)
    return STAGES[best] if best is not None else None


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # ``from pkg import sub`` imports the submodule pkg.sub when there is one.
    subs = [f"{prefix}.{a.name}" for a in node.names if f"{prefix}.{a.name}" in MODULES]
    return subs or [prefix]


def imports_of(module: str) -> list[tuple[str, int]]:
    """Every in-project module ``module`` imports, anywhere in the file, with the line number."""
    path = MODULES[module]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out += [(m, node.lineno) for m in _resolve(module, path, node)]
    return [(m, n) for m, n in out if m.split(".")[0] in PACKAGES]


def problem(module: str, target: str) -> str | None:
    """Why ``module`` must not import ``target``, or None when it may."""
    own, theirs = stage(module), stage(target)
    if (module, target) in ALLOWED:
        return None
    if module.startswith("clipcrop_plugin") and target.startswith("trainer"):
        return "the plugin never imports the trainer"
    if theirs is None:
        return None
    if own is None:
        return "a shared leaf module imports a stage"
    if theirs > own:
        return f"a later stage ({own} -> {theirs})"
    if theirs in SKIPPED.get(own, ()):
        return f"stage {own} takes results, not the scorer/model (stage {theirs})"
    return None


def violations() -> list[str]:
    return [f"{module}:{line} imports {target}: {why}" for module in MODULES for target, line in imports_of(module)
            if (why := problem(module, target)) is not None]


def test_every_module_has_a_stage() -> None:
    missing = [m for m in MODULES if m not in SHARED and stage(m) is None]
    assert missing == [], "add these modules to STAGES or SHARED in tests/test_layers.py"


def test_no_import_runs_against_the_flow() -> None:
    assert violations() == []


def test_allow_list_entries_are_still_needed() -> None:
    # A fixed back-edge must leave the allow-list, so it cannot quietly come back.
    for importer, target in ALLOWED:
        assert importer in MODULES and any(t == target for t, _ in imports_of(importer)), (importer, target)


@pytest.mark.parametrize("module, target", [
    ("clipcrop_plugin.store.store", "clipcrop_plugin.preview"),
    ("clipcrop_plugin.xmp.batch", "clipcrop_plugin.suggest"),
    ("clipcrop_plugin.xmp.batch", "clipcrop_plugin.scoring.registry"),
    ("clipcrop_plugin.scan", "clipcrop_plugin.daemon.backend"),
    ("clipcrop_plugin.photofiles", "trainer.data"),
    ("clipcrop_plugin.errors", "clipcrop_plugin.store"),
])
def test_the_checker_catches_back_edges(module: str, target: str) -> None:
    assert problem(module, target) is not None


@pytest.mark.parametrize("module, target", [
    ("clipcrop_plugin.cli.scan", "clipcrop_plugin.jobs"),
    ("clipcrop_plugin.jobs", "clipcrop_plugin.xmp.writer"),
    ("clipcrop_plugin.xmp.fromstore", "clipcrop_plugin.store"),
    ("clipcrop_plugin.daemon.backend", "clipcrop_plugin.settle"),
    ("clipcrop_plugin.suggest", "clipcrop_plugin.photofiles"),
    ("trainer.data", "clipcrop_plugin.store"),
    ("clipcrop_plugin.imaging", "clipcrop_plugin.errors"),
])
def test_the_checker_lets_the_flow_through(module: str, target: str) -> None:
    assert problem(module, target) is None


def test_xmp_batch_and_daemon_import_no_scorer_and_no_scan_command() -> None:
    batch = {t for t, _ in imports_of("clipcrop_plugin.xmp.batch")}
    assert not any(t.startswith(("clipcrop_plugin.suggest", "clipcrop_plugin.scoring")) for t in batch)
    daemon = {t for m in MODULES if m.startswith("clipcrop_plugin.daemon") for t, _ in imports_of(m)}
    assert "clipcrop_plugin.scan" not in daemon and "clipcrop_plugin.cli.scan" not in daemon


# The stage names docs/ARCHITECTURE.md's module table uses, by stage number.
STAGE_NAMES = {0: "file", 1: "image", 2: "subjects/candidates", 3: "model", 4: "scorer", 5: "store",
               6: "metadata", 7: "jobs", 8: "daemon/api", 9: "server/cli", 10: "trainer"}


def test_the_architecture_table_gives_each_module_its_stage() -> None:
    from support.docs import architecture_rows

    wrong = []
    for path, (label, _job) in architecture_rows().items():
        module = path[: -len(".py")].replace("/", ".").removesuffix(".__init__")
        want = "shared" if module in SHARED else f"{stage(module)} {STAGE_NAMES.get(stage(module), '?')}"
        if module in MODULES and label != want:
            wrong.append(f"{path}: {label!r}, the stage map says {want!r}")
    assert wrong == [], "docs/ARCHITECTURE.md disagrees with STAGES: " + "; ".join(wrong)
