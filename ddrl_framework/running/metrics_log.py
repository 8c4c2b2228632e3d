"""``metrics.jsonl``: one JSON object per iteration, appended; trimmed on resume so that no
iteration is duplicated or missing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ddrl_framework.kit.io import atomic_write_bytes


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash: everything after it is dropped on resume
    return records


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path

    def keep_before(self, iteration: int, write: bool = True) -> list[dict[str, Any]]:
        """Drop records of iteration >= ``iteration`` (work after the checkpoint being resumed);
        ``write = False`` only reads (a rank that does not own the file)."""
        kept = [r for r in read_metrics(self.path) if r.get("iteration", -1) < iteration]
        if write:
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        return kept

    def append(self, record: dict[str, Any]) -> None:
        """Append one line (NaN and inf are written as null: the file stays strict JSON)."""
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        with open(self.path, "a") as handle:
            handle.write(json.dumps(clean) + "\n")
