"""Data source ``sklearn-digits``: scikit-learn's 1,797 8x8 handwritten digits, real data that ships
inside the package (no download). Labels give prompts "digit 3".

Pixels are in [0, 1], as every data source yields them; the policy's ``encode`` maps them to its
latents. A fixed split (``split_seed``) holds out ``held_out_fraction`` of the images for evaluation.
``classes`` keeps only those digits, in both parts (the same split, so a kept image is held out
exactly when it is held out from all ten): e.g. a reference pretrained without any 3s.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
from torch import Tensor

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.data_nodes import BatchLoader
from ddrl_framework.types import DataBatch
from ddrl_plugins.shared.digits import DigitsSplit, split_digits


@hookimpl
def register_data_sources(register):
    register("sklearn-digits", SklearnDigits)


def _batch(images: Tensor, labels: Tensor) -> DataBatch:
    return DataBatch(prompts=tuple(f"digit {int(l)}" for l in labels), labels=labels, x0=images)


def _digit_classes(_, attribute, value: tuple[int, ...]) -> None:
    if not value or len(set(value)) != len(value) or not all(isinstance(v, int) and 0 <= v <= 9 for v in value):
        raise ValueError(f"{attribute.name} must be distinct digits 0-9 (at least one), got {list(value)}")


@attrs.frozen(kw_only=True)
class SklearnDigits:
    size: int = attrs.field(default=8, validator=attrs.validators.ge(8))  # 8, or upsampled
    held_out_fraction: float = attrs.field(default=0.2, validator=attrs.validators.and_(
        attrs.validators.gt(0.0), attrs.validators.lt(1.0)))
    split_seed: int = 0  # the fixed train / held-out split
    classes: tuple[int, ...] = attrs.field(default=tuple(range(10)), converter=tuple, validator=_digit_classes)
    _split: DigitsSplit = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        split = split_digits(self.size, self.held_out_fraction, self.split_seed)
        kept = torch.isin(split.labels, torch.as_tensor(self.classes))
        object.__setattr__(self, "_split", attrs.evolve(
            split, train=split.train[kept[split.train]], held_out=split.held_out[kept[split.held_out]]))

    @property
    def num_train(self) -> int:
        return len(self._split.train)

    def _collate(self, positions: Sequence[int]) -> DataBatch:
        split = self._split
        index = split.train[torch.as_tensor(positions)]
        return _batch(split.images[index], split.labels[index])

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        return BatchLoader(self.num_train, batch_size, seed, self._collate)

    def held_out(self) -> DataBatch:
        split = self._split
        return _batch(split.images[split.held_out], split.labels[split.held_out])
