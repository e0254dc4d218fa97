"""Settings: defaults in code, overridden by a TOML file, then by environment variables.

File: ``$CLIPCROP_CONFIG`` or ``<user config dir>/clipcrop/config.toml``. Environment:
``CLIPCROP_DB`` (SQLAlchemy URL), ``CLIPCROP_DATA_DIR``, ``CLIPCROP_MODEL_DIR``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

APP = "clipcrop"


def data_dir() -> Path:
    """Where the database, status file and thumbnails live (XDG data dir on Linux)."""
    env = os.environ.get("CLIPCROP_DATA_DIR")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP))


def config_path() -> Path:
    env = os.environ.get("CLIPCROP_CONFIG")
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir(APP)) / "config.toml"


@dataclass
class Settings:
    """Everything configurable. Field names are the TOML keys."""

    db_url: str = ""  # empty: sqlite file in data_dir()
    model_dir: str = ""  # empty: data_dir()/models
    weights: str = ""  # explicit CLIP weights or checkpoint path
    clip_model: str = "RN50"
    clip_pretrained: str = "openai"
    scorer: str = "auto"
    device: str = "auto"
    aspects: list[str] = field(default_factory=list)
    sidecar_naming: str = "ext"  # "ext": IMG.JPG.xmp, "base": IMG.xmp
    embed: bool = False
    poll: bool = False
    stable_seconds: float = 1.0
    rescan_seconds: float = 600.0
    batch_size: int = 8
    workers: int = 0  # scan/watch worker processes; 0: one per CPU core
    # clipcrop worker: library path prefix -> where this machine mounts it ({"/volume1/photo" = "/mnt/nas"})
    path_map: dict[str, str] = field(default_factory=dict)

    def resolved_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{data_dir() / 'clipcrop.sqlite3'}"

    def resolved_model_dir(self) -> Path:
        return Path(self.model_dir).expanduser() if self.model_dir else data_dir() / "models"


def load_settings(path: Path | None = None) -> Settings:
    """Read settings from ``path`` (or the default config file if it exists) and the environment."""
    path = path or config_path()
    values: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        section = raw.get("clipcrop", raw)
        known = {f.name for f in fields(Settings)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s) in {path}: {', '.join(unknown)}")
        values.update(section)
    if os.environ.get("CLIPCROP_DB"):
        values["db_url"] = os.environ["CLIPCROP_DB"]
    if os.environ.get("CLIPCROP_MODEL_DIR"):
        values["model_dir"] = os.environ["CLIPCROP_MODEL_DIR"]
    try:
        return Settings(**values)
    except TypeError as exc:
        raise ConfigError(f"bad config {path}: {exc}") from exc
