"""Metrics in an open_clip image-feature space: ``clip-frechet-distance``, ``clip-diversity``
and ``clip-temporal-consistency``.

The model is named as for the CLIP rewards: ``model``, ``pretrained`` (an open_clip tag, a
checkpoint file, or ``""`` for random weights from a fixed seed), ``model_config`` (a JSON
architecture file; the bundled ``ddrl-tiny-clip`` needs none). Features are unit-length image
embeddings; videos are embedded frame by frame.

* ``clip-frechet-distance`` (``fd_clip``): the Frechet distance between Gaussians fitted to the
  samples' features and to those of ``against``: ``"held-out"`` data images (the data source's
  held-out ``x0``) or ``"reference-samples"``, the frozen reference's own samples from the same
  evaluation noise and prompts (for prompt-only data; computed once and kept). For videos the
  features are per frame, and ``fd_clip_frame_diff`` adds the Frechet distance of the adjacent-frame
  feature differences ``f_{t+1} - f_t`` (motion statistics in feature space; this is not FVD).
* ``clip-diversity``: ``clip_prompt_diversity``, the mean pairwise feature distance among the
  samples of the same prompt, averaged over prompts (``train.eval_samples_per_prompt`` >= 2 gives
  each prompt several samples), and ``clip_diversity``, the same over all samples. Videos: the
  mean of their frame features.
* ``clip-temporal-consistency`` (videos): ``clip_temporal_consistency``, the mean cosine
  similarity of adjacent frames' features (1: a still video).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.contexts import EvalContext
from ddrl_framework.evaluation.frechet import frechet_distance, weighted_moments
from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.metric_key import NON_NEGATIVE, MetricKey
from ddrl_plugins.shared.open_clip_models import as_frames, image_features


@hookimpl
def register_metrics(register):
    register("clip-frechet-distance", ClipFrechetDistance)
    register("clip-diversity", ClipDiversity)
    register("clip-temporal-consistency", ClipTemporalConsistency)


@attrs.frozen(kw_only=True)
class _ClipFeatures:
    model: str = "ViT-B-32"  # an open_clip model name
    pretrained: str = "openai"  # an open_clip tag, a checkpoint file, or "" for random weights
    model_config: str | None = None  # a JSON architecture file named <model>.json

    def frame_features(self, samples: Tensor) -> Tensor:
        """``[N, D]`` for images, ``[B, T, D]`` for videos."""
        features = image_features(self.model, self.pretrained, self.model_config, as_frames(samples))
        return features.view(samples.shape[0], samples.shape[2], -1) if samples.ndim == 5 else features


def _fd(a: Tensor, b: Tensor) -> float:
    return frechet_distance(*weighted_moments(a), *weighted_moments(b))


def _frechet(samples: Tensor, others: Tensor) -> dict[str, float]:
    """FD of the features (per frame for videos) and, for videos, of adjacent-frame differences."""
    if samples.ndim == 2:
        return {"": _fd(samples, others)}
    return {"": _fd(samples.flatten(0, 1), others.flatten(0, 1)),
            "_frame_diff": _fd((samples[:, 1:] - samples[:, :-1]).flatten(0, 1),
                               (others[:, 1:] - others[:, :-1]).flatten(0, 1))}


@attrs.frozen(kw_only=True)
class ClipFrechetDistance(_ClipFeatures):
    """Frechet distance in open_clip feature space (module docstring)."""

    against: Literal["held-out", "reference-samples"] = "held-out"
    key: str = "fd_clip"  # the name it is reported under
    _kept: dict[Any, Tensor] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    @classmethod
    def metric_keys(cls, options: Mapping[str, Any]) -> Sequence[MetricKey]:
        """Lower is better, for the features and (videos) their adjacent-frame differences."""
        key = options.get("key", "fd_clip")
        return [MetricKey(key, "lower", *NON_NEGATIVE), MetricKey(key + "_frame_diff", "lower", *NON_NEGATIVE)]

    @property
    def needs_reference(self) -> bool:
        return self.against == "reference-samples"

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        generated = self.frame_features(context.samples).cpu()
        others = self._reference_features(context) if self.needs_reference else self._held_out_features(context)
        return {self.key + suffix: value for suffix, value in _frechet(generated, others).items()}

    def _held_out_features(self, context: EvalContext) -> Tensor:
        x0 = context.held_out.x0
        if x0 is None:
            raise ValueError("against = \"held-out\" needs data images, and this data source's held-out split "
                             "has none: set against = \"reference-samples\"")
        fingerprint = ("held-out", tuple(x0.shape), float(x0.double().sum()))
        if fingerprint not in self._kept:
            self._kept[fingerprint] = self.frame_features(x0).cpu()
        return self._kept[fingerprint]

    def _reference_features(self, context: EvalContext) -> Tensor:
        noise = context.trajectory.initial_noise
        fingerprint = ("reference", id(context.reference), tuple(noise.shape), float(noise.double().sum()))
        if fingerprint not in self._kept:
            generator = torch.Generator(noise.device).manual_seed(0)
            trajectory = context.sampler.rollout(context.reference, context.cond, noise, generator)
            self._kept[fingerprint] = self.frame_features(context.reference.decode(trajectory.final)).cpu()
        return self._kept[fingerprint]


def _mean_pairwise(features: Tensor) -> Tensor:
    return torch.pdist(features.double()).mean()


@attrs.frozen(kw_only=True)
class ClipDiversity(_ClipFeatures):
    """Per-prompt and overall mean pairwise feature distance (module docstring)."""

    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        features = self.frame_features(context.samples).cpu()
        if features.ndim == 3:
            features = torch.nn.functional.normalize(features.mean(1), dim=-1)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, prompt in enumerate(context.prompts):
            groups[prompt].append(i)
        within = [_mean_pairwise(features[index]) for index in groups.values() if len(index) > 1]
        if not within:
            raise ValueError(f"no prompt has two samples among the {len(features)} evaluated: set "
                             "train.eval_samples_per_prompt >= 2 (and train.eval_samples to a multiple of it)")
        return {"clip_prompt_diversity": float(torch.stack(within).mean()),
                "clip_diversity": float(_mean_pairwise(features))}


@attrs.frozen(kw_only=True)
class ClipTemporalConsistency(_ClipFeatures):
    """Mean cosine similarity of adjacent frames' features (module docstring)."""

    needs_reference = False

    @torch.no_grad()
    def __call__(self, context: EvalContext) -> dict[str, float]:
        samples = context.samples
        if samples.ndim != 5 or samples.shape[2] < 2:
            raise ValueError(f"clip-temporal-consistency takes videos [B, C, T >= 2, H, W]; got "
                             f"{tuple(samples.shape)}")
        features = self.frame_features(samples).cpu().double()
        return {"clip_temporal_consistency": float((features[:, 1:] * features[:, :-1]).sum(-1).mean())}
