"""Where results made once are kept (pretrained references, reference samples, classifiers),
and the short hashes of config data that key them."""

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


def config_hash(data: Any) -> str:
    """A short stable hash of JSON-able config data."""
    text = json.dumps(data, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
