"""Data source ``sklearn-digits``: scikit-learn's 1,797 8x8 handwritten digits, real data that ships
inside the package (no download). Labels give prompts "digit 3".

Pixels are in [0, 1], as every data source yields them; the policy's ``encode`` maps them to its
latents. A fixed split (``split_seed``) holds out ``held_out_fraction`` of the images for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_framework.data_nodes import BatchLoader
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.types import DataBatch


@hookimpl
def register_data_sources(register):
    register("sklearn-digits", SklearnDigits)


def load_digit_images(size: int) -> tuple[Tensor, Tensor]:
    """All digits as ``[1797, 1, size, size]`` in [0, 1] and their labels ``[1797]``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), torch.tensor(digits.target, dtype=torch.long)


def _batch(images: Tensor, labels: Tensor) -> DataBatch:
    return DataBatch(prompts=tuple(f"digit {int(l)}" for l in labels), labels=labels, x0=images)


@attrs.frozen(kw_only=True)
class SklearnDigits:
    size: int = attrs.field(default=8, validator=attrs.validators.ge(8))  # 8, or upsampled
    held_out_fraction: float = attrs.field(default=0.2, validator=attrs.validators.and_(
        attrs.validators.gt(0.0), attrs.validators.lt(1.0)))
    split_seed: int = 0  # the fixed train / held-out split
    _images: Tensor = attrs.field(init=False, repr=False)
    _labels: Tensor = attrs.field(init=False, repr=False)
    _train: Tensor = attrs.field(init=False, repr=False)
    _held_out: Tensor = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        images, labels = load_digit_images(self.size)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.split_seed))
        n_held = int(round(self.held_out_fraction * len(labels)))
        for name, value in (("_images", images), ("_labels", labels),
                            ("_held_out", order[:n_held]), ("_train", order[n_held:])):
            object.__setattr__(self, name, value)

    @property
    def num_train(self) -> int:
        return len(self._train)

    def _collate(self, positions: Sequence[int]) -> DataBatch:
        index = self._train[torch.as_tensor(positions)]
        return _batch(self._images[index], self._labels[index])

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        return BatchLoader(self.num_train, batch_size, seed, self._collate)

    def held_out(self) -> DataBatch:
        return _batch(self._images[self._held_out], self._labels[self._held_out])
