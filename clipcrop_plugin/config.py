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

# Where crop metadata goes for each photo host: (sidecar naming, embed into JPEG/PNG). README
# "Hosts" says what each host reads and when it applies a crop.
HOST_PROFILES: dict[str, tuple[str, bool]] = {
    "generic": ("base", False),  # IMG.xmp: what every crs:-reading host we know looks for
    "darktable": ("base", False),  # darktable's Lightroom import reads only IMG.xmp
    "lightroom": ("base", True),  # Lightroom/ACR read JPEG/PNG XMP from inside the file, RAW's from IMG.xmp
    "digikam": ("ext", False),  # digiKam's own sidecar name (it shows crs: values, applies no crop)
}


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
    zeroshot_rescore: int = 0  # zeroshot: re-embed the top N crops from their own pixels (0: one pass only)
    aspects: list[str] = field(default_factory=list)
    host: str = "generic"  # picks sidecar_naming and embed when those are not set (HOST_PROFILES)
    sidecar_naming: str = ""  # "base": IMG.xmp, "ext": IMG.JPG.xmp; empty: the host's
    embed: bool = False  # also on when the host profile embeds
    poll: bool = False
    stable_seconds: float = 1.0
    rescan_seconds: float = 600.0
    batch_size: int = 8
    workers: int = 0  # scan/watch worker processes; 0: one per CPU core
    # clipcrop worker: library path prefix -> where this machine mounts it ({"/volume1/photo" = "/mnt/nas"})
    path_map: dict[str, str] = field(default_factory=dict)
    # The free grid suggests a crop only when it beats the full frame by this much (scorer
    # score units); below it the suggestion is "keep as is". See docs/quality.md for the choice.
    keep_margin: float = 0.12

    def __post_init__(self) -> None:
        if self.host not in HOST_PROFILES:
            raise ConfigError(f"host must be one of {', '.join(HOST_PROFILES)}, not {self.host!r}")
        naming, embed = HOST_PROFILES[self.host]
        if not self.sidecar_naming:
            self.sidecar_naming = naming
        elif self.sidecar_naming not in ("base", "ext"):
            raise ConfigError(f"sidecar_naming must be 'base' or 'ext', not {self.sidecar_naming!r}")
        self.embed = bool(self.embed) or embed

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
