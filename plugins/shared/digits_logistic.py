"""The multinomial logistic regression of the sklearn digits that the ``digit-log-prob`` reward
scores with (fitted to the train split), shared so that a metric can ask what that reward's
classifier sees (the hack rate) without importing a reward plugin."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_plugins.shared.digits import split_digits


@functools.lru_cache(maxsize=4)
def fit_logistic(regularization: float) -> tuple[Tensor, Tensor]:
    """Weights ``[10, 64]`` and biases ``[10]`` (sklearn's ``C = regularization``)."""
    from sklearn.linear_model import LogisticRegression

    split = split_digits()
    pixels = split.images[split.train].flatten(1).numpy()
    model = LogisticRegression(C=regularization, max_iter=2000).fit(pixels, split.labels[split.train].numpy())
    return torch.tensor(model.coef_, dtype=torch.float32), torch.tensor(model.intercept_, dtype=torch.float32)


def logistic_log_probs(samples: Tensor, regularization: float) -> Tensor:
    """Images ``[B, 1, H, W]`` in [0, 1] (resized to 8x8) -> ``[B, 10]`` log-probabilities (on CPU)."""
    weights, bias = fit_logistic(regularization)
    x = samples.float().cpu()
    if x.shape[-2:] != (8, 8):
        x = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
    return torch.log_softmax(x.flatten(1) @ weights.T + bias, dim=1)
