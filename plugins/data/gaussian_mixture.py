"""Data source ``gaussian-mixture``: points of an isotropic Gaussian mixture on R^d, the data of the
exactly solvable benchmark (``configs/solvable-gmm.toml``).

``p_data = sum_i w_i N(mu_i, s_i^2 I)``. A training pool of ``train_size`` points and a held-out
sample of ``held_out_size`` points are drawn once from ``seed`` (from two separate streams), so
batches are resumable like any data set's. Batches carry ``x0`` ``[B, d]`` (points, not pixels:
the ``mlp-denoiser`` policy's ``encode`` is the identity) and empty prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.data_nodes import BatchLoader
from ddrl_framework.types import DataBatch
from ddrl_plugins.shared.solvable import GaussianMixture

FOUR_CORNERS = ((-0.5, -0.5), (0.5, -0.5), (-0.5, 0.5), (0.5, 0.5))


@hookimpl
def register_data_sources(register):
    register("gaussian-mixture", GaussianMixtureData)


def _points(points: Tensor) -> DataBatch:
    return DataBatch(prompts=("",) * len(points), x0=points)


@attrs.frozen(kw_only=True)
class GaussianMixtureData:
    means: tuple[tuple[float, ...], ...] = FOUR_CORNERS  # mu_i, one point of R^d each
    stds: tuple[float, ...] = (0.12,)  # s_i: one shared by every component, or one per component
    weights: tuple[float, ...] | None = None  # w_i (normalized); None: equal
    seed: int = 0  # the training pool and the held-out sample
    train_size: int = attrs.field(default=50_000, validator=attrs.validators.ge(1))
    held_out_size: int = attrs.field(default=20_000, validator=attrs.validators.ge(1))
    _mixture: GaussianMixture = attrs.field(init=False, repr=False)
    _train: Tensor = attrs.field(init=False, repr=False)
    _held_out: Tensor = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        mixture = GaussianMixture.of(self.means, self.stds, self.weights)
        train = mixture.sample(self.train_size, torch.Generator().manual_seed(self.seed * 2))
        held_out = mixture.sample(self.held_out_size, torch.Generator().manual_seed(self.seed * 2 + 1))
        object.__setattr__(self, "_mixture", mixture)
        object.__setattr__(self, "_train", train.float())
        object.__setattr__(self, "_held_out", held_out.float())

    @property
    def mixture(self) -> GaussianMixture:
        """``p_data`` in closed form (for the benchmark's optima)."""
        return self._mixture

    def _collate(self, positions: Sequence[int]) -> DataBatch:
        return _points(self._train[torch.as_tensor(positions)])

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        return BatchLoader(self.train_size, batch_size, seed, self._collate)

    def held_out(self) -> DataBatch:
        """``held_out_size`` points ``[N, d]``, the same at every call."""
        return _points(self._held_out)
