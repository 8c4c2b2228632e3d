"""Where results made once are kept (pretrained references, reference samples, classifiers),
and the short hashes of config data that key them.

Some ship with the package (``ddrl_framework/shipped``: the default digits reference, so the main
job needs no pretraining): :func:`cached` finds an entry in the user's cache first, then there.
Each shipped entry is exactly what ``ddrl pretrain`` writes for its config (``benchmarks/
shipped_reference.py`` retrains it and compares)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """``$DDRL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ddrl-framework``, else ``~/.cache/ddrl-framework``."""
    if os.environ.get("DDRL_CACHE_DIR"):
        return Path(os.environ["DDRL_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ddrl-framework"


SHIPPED = Path(__file__).resolve().parents[1] / "shipped"


def cached(relative: str | Path, marker: str | None = None) -> Path | None:
    """The cache entry ``relative`` (a file, or a folder holding ``marker``): the user's, else the
    shipped one, else None."""
    for root in (cache_root(), SHIPPED):
        path = root / relative
        if (path / marker).is_file() if marker else path.is_file():
            return path
    return None


def config_hash(data: Any) -> str:
    """A short stable hash of JSON-able config data."""
    text = json.dumps(data, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
