"""Out-of-sample floors: what a policy that reached a target exactly would score, measured the way
a run is (``eval_samples`` samples against held-out data it was not drawn from).

Each split cuts the held-out data at random into two disjoint halves; the target's weights are
computed on the first half, ``eval_samples`` images are drawn from it by those weights, and every
metric scores them against the second half (a target-weighted FD reweights that half itself). The
spread over splits is the data's own noise at the comparison's sample size. The floor is
conservative: the reference set is half of what the runs are scored against, which adds a little
to an FD.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import attrs
import torch

from ddrl_framework.evaluation.evaluator import Evaluator
from ddrl_framework.evaluation.frechet import target_weights
from ddrl_framework.types import DataBatch


def subset(batch: DataBatch, index: torch.Tensor) -> DataBatch:
    """Members ``index`` (a 1-d long tensor) of ``batch``."""
    return DataBatch(prompts=tuple(batch.prompts[i] for i in index.tolist()),
                     labels=None if batch.labels is None else batch.labels[index.to(batch.labels.device)],
                     x0=None if batch.x0 is None else batch.x0[index.to(batch.x0.device)])


def halves(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint random halves of ``range(count)``."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[: count // 2], order[count // 2:]


def mean_and_spread(records: Sequence[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    keys = [k for k in records[0] if all(k in r for r in records)]
    means = {k: statistics.fmean(r[k] for r in records) for k in keys}
    spread = {k: statistics.stdev(r[k] for r in records) if len(records) > 1 else 0.0 for k in keys}
    return means, spread


def target_floor(evaluator: Evaluator, weighting: str, temperature: float, splits: int,
                 seed: int = 20_000) -> dict[str, Any]:
    """A target's metrics out of sample: mean and sd over ``splits`` random half splits."""
    held_out = evaluator.held_out
    records = []
    for s in range(splits):
        first, second = halves(len(held_out), seed + s)
        source, against = subset(held_out, first), subset(held_out, second)
        weights = target_weights(weighting, evaluator.score_pixels(source.x0, source.prompts), temperature)
        records.append(evaluator.evaluate_data(weights, seed=seed + s, source=source, against=against))
    means, spread = mean_and_spread(records)
    return {"values": means, "spread": spread, "splits": splits}


def measure_floors(evaluator: Evaluator, targets: Sequence[Any], splits: int) -> dict[str, Any]:
    """Every target's out-of-sample floor (``targets``: the ``[compare].targets`` entries)."""
    return {t.name: {**attrs.asdict(t), **target_floor(evaluator, t.weighting, t.temperature, splits)}
            for t in targets}
