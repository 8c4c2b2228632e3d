"""scikit-learn's 1,797 8x8 handwritten digits (real data shipped inside the package, no
download) and the fixed train / held-out split that the digits data source, the digit reward and
the digits classifier all use."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor


def load_digit_images(size: int) -> tuple[Tensor, Tensor]:
    """All digits as ``[1797, 1, size, size]`` in [0, 1] and their labels ``[1797]``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1), torch.tensor(digits.target, dtype=torch.long)


@attrs.frozen(kw_only=True)
class DigitsSplit:
    """Every image and label, and the indices of the train and held-out parts."""

    images: Tensor  # [1797, 1, size, size]
    labels: Tensor  # [1797]
    train: Tensor  # indices
    held_out: Tensor  # indices


def split_digits(size: int = 8, held_out_fraction: float = 0.2, split_seed: int = 0) -> DigitsSplit:
    """The fixed split: a permutation from ``split_seed``, its first ``held_out_fraction`` held out."""
    images, labels = load_digit_images(size)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    n_held = int(round(held_out_fraction * len(labels)))
    return DigitsSplit(images=images, labels=labels, train=order[n_held:], held_out=order[:n_held])
