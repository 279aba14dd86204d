"""Where safealign keeps its cache and finds data; read from the environment at call time, never at import."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """Cache root for pulled models and trained artefacts (``SAFEALIGN_HOME``, default ``~/.cache/safealign``)."""
    return Path(os.environ.get("SAFEALIGN_HOME", Path.home() / ".cache" / "safealign")).expanduser()


def models_dir() -> Path:
    return home() / "models"


def data_root() -> Path | None:
    """Root of the named datasets (``SAFEALIGN_DATA``); falls back to ``../shared/data`` next to the checkout."""
    env = os.environ.get("SAFEALIGN_DATA")
    if env:
        return Path(env).expanduser()
    for candidate in (Path.cwd() / "../shared/data", Path(__file__).resolve().parents[3] / "../shared/data"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a killed process never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
