"""Seconds to save and to load one checkpoint of a config's policy and optimizer
(``torch.distributed.checkpoint`` safetensors shards + trainer state, written atomically with
fsync; one process); prints a table.

    python benchmarks/checkpoint_time.py [--config CONFIG] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import DEFAULT_CONFIG, NO_REGULARIZER, make_trainer

from ddrl_framework.running.checkpoint import load_training_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(args.config, folder, [NO_REGULARIZER])
        trainer.iteration(0)  # optimizer state exists after one step
        saves, loads = [], []
        for i in range(args.rounds):
            began = time.perf_counter()
            trainer.save(i + 1)
            saves.append(time.perf_counter() - began)
            began = time.perf_counter()
            load_training_state(trainer.shards, Path(folder) / "checkpoints" / f"iter-{i + 1:06d}")
            loads.append(time.perf_counter() - began)
        last = Path(folder) / "checkpoints" / f"iter-{args.rounds:06d}"
        size = sum(p.stat().st_size for p in last.rglob("*") if p.is_file())
    params = sum(p.numel() for p in trainer.params)
    print(f"{'parameters':>10}  {'MB on disk':>10}  {'save s':>7}  {'load s':>7}")
    print(f"{params:>10,}  {size / 1e6:>10.2f}  {statistics.median(saves):>7.4f}  {statistics.median(loads):>7.4f}")


if __name__ == "__main__":
    main()
