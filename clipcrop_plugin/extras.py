"""Optional parts of clipcrop and the pip extra that installs each.

The base package (intake, the heuristic scorer, the database, XMP, the daemon and the CLI) needs
no torch; the CLIP scorers, the trainer, the server and some decoders are extras. A command that
needs a missing extra says which one in one line instead of failing with an ImportError.
"""

from __future__ import annotations

import importlib.util

from .errors import ClipcropError

# extra -> the top-level modules it provides (all must import for the extra to count as present)
EXTRAS: dict[str, tuple[str, ...]] = {
    "clip": ("torch", "torchvision", "open_clip", "safetensors"),
    "train": ("torch", "torchvision", "open_clip", "safetensors", "scipy", "tqdm"),
    "serve": ("fastapi", "uvicorn"),
    "heic": ("pillow_heif",),
    "postgres": ("psycopg",),
    "queue": ("psycopg", "procrastinate"),
    # optional even where present: without mtcnn the cascades find faces, without cv2 only saliency
    "subjects": ("cv2", "mtcnn"),
    "raw": ("rawpy",),
}
# a module that may be missing -> the extra that brings it
_EXTRA_OF_MODULE = {module: extra for extra, modules in reversed(EXTRAS.items()) for module in modules}


class MissingExtraError(ClipcropError):
    """A feature needs an optional dependency that is not installed."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'clipcrop[{extra}]'")
        self.extra = extra


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when it is installed)."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` unless all its modules are importable."""
    if missing_modules(extra):
        raise MissingExtraError(what, extra)


def extra_for_import_error(exc: ImportError) -> str | None:
    """The extra that would fix ``exc`` (a ``ModuleNotFoundError`` of one of our optional modules)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    return _EXTRA_OF_MODULE.get(name)
