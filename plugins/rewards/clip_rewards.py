"""Rewards on open_clip embeddings: ``clip-score``, ``aesthetic`` (the LAION aesthetic MLP head),
``hpsv2`` (Human Preference Score v2, an open_clip ViT-H-14 checkpoint), and for videos
``video-clip-score`` (mean over frames) and ``temporal-consistency`` (adjacent-frame similarity).

Models load through ``open_clip.create_model(model, pretrained=...)``: ``pretrained`` is an
open_clip tag (e.g. ``"openai"``, downloaded once by open_clip) or a local checkpoint file;
``model_config`` points at a JSON architecture file for a model open_clip does not list (the
tests' tiny random models). Samples are resized and normalized as the model's preprocessing
says, as tensors (no PIL round trip).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ddrl_framework.errors import UserError
from ddrl_framework.hookspecs import hookimpl
from ddrl_plugins.shared.open_clip_models import load_open_clip, preprocess


@hookimpl
def register_reward_models(register):
    register("clip-score", ClipScore)
    register("aesthetic", Aesthetic)
    register("hpsv2", build_hpsv2)
    register("video-clip-score", VideoClipScore)
    register("temporal-consistency", TemporalConsistency)


def _preprocess(network, images: Tensor) -> Tensor:
    return preprocess(network, images)


@attrs.frozen(kw_only=True)
class _OpenClip:
    model: str = "ViT-B-32"  # an open_clip model name
    pretrained: str | None = "openai"  # an open_clip tag or a checkpoint file
    model_config: str | None = None  # a JSON architecture file named <model>.json

    @property
    def network(self):
        return load_open_clip(self.model, self.pretrained, self.model_config)[0]

    def image_embeddings(self, images: Tensor) -> Tensor:
        network = self.network.to(images.device)
        with torch.no_grad():
            return F.normalize(network.encode_image(_preprocess(network, images)).float(), dim=-1)

    def text_embeddings(self, prompts: Sequence[str], device) -> Tensor:
        network, tokenizer = load_open_clip(self.model, self.pretrained, self.model_config)
        with torch.no_grad():
            return F.normalize(network.to(device).encode_text(tokenizer(list(prompts)).to(device)).float(), dim=-1)


def _images(samples: Tensor, name: str) -> Tensor:
    if samples.ndim != 4:
        raise ValueError(f"{name} takes images [B, C, H, W]; got {tuple(samples.shape)} (for videos use "
                         "video-clip-score or temporal-consistency)")
    return samples


def _frames(samples: Tensor, name: str) -> Tensor:
    """``[B, C, T, H, W]`` to ``[B * T, C, H, W]``."""
    if samples.ndim != 5:
        raise ValueError(f"{name} takes videos [B, C, T, H, W]; got {tuple(samples.shape)}")
    return samples.transpose(1, 2).flatten(0, 1)


@attrs.frozen(kw_only=True)
class ClipScore(_OpenClip):
    """Cosine similarity of the image and prompt embeddings (times ``scale``)."""

    scale: float = 1.0

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        images = self.image_embeddings(_images(samples, "clip-score"))
        return self.scale * (images * self.text_embeddings(prompts, samples.device)).sum(-1)


def build_hpsv2(*, checkpoint: str, model: str = "ViT-H-14", model_config: str | None = None) -> ClipScore:
    """HPS v2: the cosine similarity under an open_clip model fine-tuned on human preferences
    (``HPS_v2_compressed.pt``, a local file: its ``state_dict`` is read with weights_only)."""
    if not Path(checkpoint).expanduser().is_file():
        raise UserError(f"hpsv2: checkpoint = '{checkpoint}': no such file (download HPS_v2_compressed.pt)")
    return ClipScore(model=model, pretrained=str(Path(checkpoint).expanduser()), model_config=model_config)


def aesthetic_head(embed_dim: int) -> torch.nn.Sequential:
    """The LAION aesthetic predictor v2 MLP (``sac+logos+ava1-l14-linearMSE.pth``'s layout)."""
    return torch.nn.Sequential(
        torch.nn.Linear(embed_dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
        torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16),
        torch.nn.Linear(16, 1))


def _load_head(path: str, embed_dim: int) -> torch.nn.Sequential:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"aesthetic: head = '{path}': no such file (the LAION aesthetic MLP weights)")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    state = {k.removeprefix("layers."): v for k, v in state.items()}
    head = aesthetic_head(embed_dim)
    try:
        head.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"{file}: not an aesthetic head for {embed_dim}-d embeddings: {error}") from None
    return head.eval().requires_grad_(False)


@attrs.frozen(kw_only=True)
class Aesthetic(_OpenClip):
    """The LAION aesthetic score (about 1-10) of the normalized image embedding."""

    head: str  # the MLP weights (.pth or .safetensors)
    model: str = "ViT-L-14"
    _mlp: torch.nn.Sequential = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_mlp", _load_head(self.head, int(self.network.visual.output_dim)))

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        embeddings = self.image_embeddings(_images(samples, "aesthetic"))
        with torch.no_grad():
            return self._mlp.to(embeddings.device)(embeddings).squeeze(-1)


@attrs.frozen(kw_only=True)
class VideoClipScore(ClipScore):
    """The clip score of each frame against the prompt, averaged over frames."""

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        frames = _frames(samples, "video-clip-score")
        count = samples.shape[2]
        images = self.image_embeddings(frames).view(samples.shape[0], count, -1)
        text = self.text_embeddings(prompts, samples.device).unsqueeze(1)
        return self.scale * (images * text).sum(-1).mean(1)


@attrs.frozen(kw_only=True)
class TemporalConsistency(_OpenClip):
    """The mean cosine similarity of adjacent frames' image embeddings (1: a still video)."""

    def __call__(self, samples: Tensor, prompts: Sequence[str], metadata: Mapping[str, Any]) -> Tensor:
        frames = _frames(samples, "temporal-consistency")
        count = samples.shape[2]
        if count < 2:
            raise ValueError("temporal-consistency needs videos of at least 2 frames")
        images = self.image_embeddings(frames).view(samples.shape[0], count, -1)
        return (images[:, 1:] * images[:, :-1]).sum(-1).mean(1)
