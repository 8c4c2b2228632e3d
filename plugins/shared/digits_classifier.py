"""A small CNN classifier of the sklearn digits: the feature space of the digits metrics.

Trained once on the default train split of ``sklearn-digits`` (held-out images never seen) and
cached; it is distinct from every reward model. ``features`` are its 128-d penultimate layer.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ddrl_framework.kit.cache import cache_root, cached
from ddrl_framework.kit.io import atomic_write_bytes
from ddrl_plugins.shared.digits import split_digits

VERSION = 1


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.head = nn.Linear(128, 10)

    def features(self, pixels: Tensor) -> Tensor:
        """Pixels in [0, 1], ``[N, 1, H, W]`` (resized to 8x8) -> ``[N, 128]``."""
        x = pixels.float()
        if x.shape[-2:] != (8, 8):
            x = F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False, antialias=True)
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return F.relu(self.fc(F.max_pool2d(x, 2).flatten(1)))

    def forward(self, pixels: Tensor) -> Tensor:
        return self.head(self.features(pixels))


def train_classifier(epochs: int = 15, seed: int = 0) -> DigitsCNN:
    split = split_digits()
    images, labels = split.images[split.train], split.labels[split.train]
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # callers may be in no_grad
        torch.manual_seed(seed)
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            for batch in torch.randperm(len(labels)).split(64):
                noisy = (images[batch] + 0.05 * torch.randn_like(images[batch])).clamp(0, 1)
                loss = F.cross_entropy(model(noisy), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


@functools.lru_cache(maxsize=1)
def digits_classifier() -> DigitsCNN:
    """The classifier: cached or shipped (kit.cache.cached), else trained on first use (about 15 s
    on 2 CPU cores) into the cache."""
    name = f"digits-classifier-v{VERSION}.safetensors"
    model, found = DigitsCNN(), cached(name)
    if found is not None:
        model.load_state_dict(load_file(found))
        return model.eval().requires_grad_(False)
    path = cache_root() / name
    model = train_classifier()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
    atomic_write_bytes(path, tmp.read_bytes())
    tmp.unlink()
    return model.requires_grad_(False)
