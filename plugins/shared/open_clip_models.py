"""open_clip models that rewards and metrics share: loading (cached, frozen), preprocessing as
tensors, and the bundled ``ddrl-tiny-clip`` architecture.

``pretrained``: an open_clip tag (e.g. ``"openai"``, downloaded once by open_clip), a local
checkpoint file, or ``None`` / ``""`` for random weights, drawn from a fixed seed (so every arm of
a comparison measures in the same random feature space). ``model_config``: a JSON architecture
file named ``<model>.json`` for a model open_clip does not list. ``ddrl-tiny-clip`` (16-d
embeddings, 32 px) ships inside this package for the tiny configs and tests: nothing downloads.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_framework.errors import UserError

TINY_CLIP = "ddrl-tiny-clip"
RANDOM_SEED = 0


def _add_config(model: str, model_config: str | None) -> None:
    import open_clip

    if model_config is None and model == TINY_CLIP:
        model_config = str(Path(__file__).with_name(f"{TINY_CLIP}.json"))
    if model_config is None:
        return
    config = Path(model_config).expanduser()
    if not config.is_file():
        raise UserError(f"model_config = '{model_config}': no such file")
    if config.stem != model:
        raise UserError(f"model_config '{config.name}' defines model '{config.stem}', not '{model}'")
    open_clip.add_model_config(config)


@contextlib.contextmanager
def _quiet(wanted: bool):
    """Silence open_clip's warning that random weights are random (they are wanted here)."""
    root = logging.getLogger()
    level = root.level
    if wanted:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


@functools.lru_cache(maxsize=4)
def load_open_clip(model: str, pretrained: str | None, model_config: str | None):
    """``(model, tokenizer)``, frozen, in eval mode; cached so several components share one copy."""
    import open_clip

    _add_config(model, model_config)
    if model not in open_clip.list_models():
        raise UserError(f"open_clip has no model '{model}' (see open_clip.list_models(), or give model_config)")
    try:
        with torch.random.fork_rng(devices=[]), _quiet(not pretrained):
            torch.manual_seed(RANDOM_SEED)  # random weights: the same in every process
            network = open_clip.create_model(model, pretrained=pretrained or None)
    except (RuntimeError, OSError) as error:
        raise UserError(f"cannot load open_clip '{model}' with pretrained '{pretrained}': {error}") from None
    return network.eval().requires_grad_(False), open_clip.get_tokenizer(model)


def preprocess(network, images: Tensor) -> Tensor:
    """``[N, C, H, W]`` in [0, 1] to the model's input: resized, normalized (grayscale repeated)."""
    from open_clip.model import get_model_preprocess_cfg

    cfg = get_model_preprocess_cfg(network)
    size = cfg.get("size", 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    images = F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), device=images.device)
    std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), device=images.device)
    return (images.clamp(0, 1) - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


@torch.no_grad()
def image_features(model: str, pretrained: str | None, model_config: str | None, images: Tensor,
                   normalize: bool = True, chunk: int = 64) -> Tensor:
    """Image embeddings ``[N, D]`` (float32, unit length when ``normalize``) of ``[N, C, H, W]``."""
    network = load_open_clip(model, pretrained, model_config)[0].to(images.device)
    out = [network.encode_image(preprocess(network, part)).float() for part in images.split(chunk)]
    features = torch.cat(out)
    return F.normalize(features, dim=-1) if normalize else features


def as_frames(samples: Tensor) -> Tensor:
    """Videos ``[B, C, T, H, W]`` to frames ``[B * T, C, H, W]`` (images pass through)."""
    return samples.transpose(1, 2).flatten(0, 1) if samples.ndim == 5 else samples
