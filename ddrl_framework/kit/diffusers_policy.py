"""What every text-conditioned diffusers backbone shares: the policy adapter for a diffusers
pipeline's denoiser (UNet or transformer), VAE and text encoders.

A backbone plugin subclasses :class:`DiffusersPolicy` and supplies four things: how to encode
prompts (``encode_prompts``), how the VAE maps pixels to latents and back (``vae_encode`` /
``vae_decode``), and the name of the denoiser's input argument. Everything else is here:

* classifier-free guidance in ``predict`` (``guidance_scale`` 0 or 1: off), the guided output being
  what the sampler's Gaussian transitions use, in rollouts and in training alike; the diffusion
  loss always trains the unguided conditional output;
* prompt embeddings cached per prompt (the text encoders are frozen);
* LoRA through peft (``lora_rank > 0``) or full fine-tuning of the denoiser; with LoRA the reverse-KL
  reference is the same network with its adapters disabled, not a second copy;
* gradient checkpointing and bf16 autocast as options; log-probs stay float32 (the samplers compute
  them from ``predict(...).float()``).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.kit.forward_process import FlowMatchingProcess
from ddrl_framework.types import DataBatch

DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


@attrs.frozen(kw_only=True)
class TextConditions:
    """Per-sample text embeddings (keyword arguments of the denoiser, each ``[B, ...]``), and the
    negative-prompt embeddings when guidance is on."""

    embeds: Mapping[str, Tensor]
    negative: Mapping[str, Tensor] | None = None
    guidance_scale: float = 1.0

    @property
    def guided(self) -> bool:
        return self.negative is not None and self.guidance_scale not in (0.0, 1.0)

    def unguided(self) -> TextConditions:
        return TextConditions(embeds=self.embeds)


@attrs.frozen(kw_only=True)
class TrainingOptions:
    """How the denoiser is fine-tuned: the options every diffusers policy plugin accepts."""

    lora_rank: int = 0  # 0: full fine-tuning of the denoiser
    lora_alpha: float | None = None  # None: equal to the rank
    lora_target_modules: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lora_seed: int = 0  # the adapters' initial weights
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "bf16"] = "no"  # "bf16": autocast the denoiser, frozen parts in bf16
    guidance_scale: float = 1.0  # classifier-free guidance in rollouts; 0 or 1: off
    negative_prompt: str = ""


class DiffusersPolicy:
    """Base class; see the module docstring. ``components`` are the pipeline's, by name."""

    pipeline_class: type = type(None)  # the diffusers pipeline that saves and loads the folder
    denoiser_name: str = "transformer"  # the denoiser's key in ``components``
    denoiser_input: str = "hidden_states"  # the name of the denoiser's latent argument
    lossless_codec = False  # a VAE round trip is not the identity

    def __init__(self, pipeline: Any, forward_process: Any, sample_shape: tuple[int, ...],
                 pixel_shape: tuple[int, ...], options: TrainingOptions):
        self.pipeline = pipeline
        self.forward_process = forward_process  # DdpmProcess or FlowMatchingProcess
        self.sample_shape = tuple(sample_shape)  # one latent
        self.pixel_shape = tuple(pixel_shape)  # what ``decode`` returns for one latent
        self.options = options
        # eval mode throughout: dropout would make the training pass differ from the rollout (ratio != 1)
        self.denoiser: torch.nn.Module = getattr(pipeline, self.denoiser_name).eval()
        self._prompt_cache: dict[str, dict[str, Tensor]] = {}
        self._is_reference = False
        self._reference: DiffusersPolicy | None = None
        # on the reference view: the policy's trainable weights by name, frozen (a snapshot for LoRA)
        self._reference_weights: dict[str, Tensor] | None = None
        self._freeze_all_but_denoiser()
        if options.lora_rank > 0:
            self._add_lora()
        if options.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()

    # --- set-up -------------------------------------------------------------------------
    def _frozen_modules(self) -> list[torch.nn.Module]:
        modules = self.pipeline.components.values()
        return [m for m in modules if isinstance(m, torch.nn.Module) and m is not self.denoiser]

    def _freeze_all_but_denoiser(self) -> None:
        for module in self._frozen_modules():
            module.requires_grad_(False).eval()
            if self.options.mixed_precision == "bf16":
                module.to(torch.bfloat16)

    def _add_lora(self) -> None:
        from peft import LoraConfig

        o = self.options
        self.denoiser.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.lora_seed)
            self.denoiser.add_adapter(LoraConfig(
                r=o.lora_rank, lora_alpha=o.lora_alpha or o.lora_rank,
                target_modules=list(o.lora_target_modules), init_lora_weights=True))

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def uses_lora(self) -> bool:
        return self.options.lora_rank > 0

    # --- what a backbone supplies ----------------------------------------------------
    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        """Denoiser keyword arguments for ``prompts`` (each ``[len(prompts), ...]``), unguided."""
        raise NotImplementedError

    def vae_encode(self, pixels: Tensor) -> Tensor:
        """Pixels in [-1, 1] to normalized latents."""
        raise NotImplementedError

    def vae_decode(self, latents: Tensor) -> Tensor:
        """Normalized latents to pixels in [-1, 1]."""
        raise NotImplementedError

    # --- conditions -------------------------------------------------------------------
    @torch.no_grad()
    def _embeddings(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        for prompt in dict.fromkeys(p for p in prompts if p not in self._prompt_cache):
            # one prompt at a time: an embedding must not depend on which prompts came with it
            self._prompt_cache[prompt] = self.encode_prompts([prompt])
        rows = [self._prompt_cache[p] for p in prompts]
        return {k: torch.cat([row[k] for row in rows]) for k in rows[0]}

    def encode_conditions(self, batch: DataBatch) -> TextConditions:
        embeds = self._embeddings(batch.prompts)
        scale = self.options.guidance_scale
        if scale in (0.0, 1.0):
            return TextConditions(embeds=embeds)
        negative = self._embeddings([self.options.negative_prompt] * len(batch))
        return TextConditions(embeds=embeds, negative=negative, guidance_scale=scale)

    # --- the network --------------------------------------------------------------------
    def _autocast(self):
        enabled = self.options.mixed_precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _adapters_state(self):
        if self._is_reference and self.uses_lora:
            return _adapters_disabled(self.denoiser)
        return contextlib.nullcontext()

    def _denoise(self, x_t: Tensor, t: Tensor, embeds: Mapping[str, Tensor]) -> Tensor:
        dtype = next(self.denoiser.parameters()).dtype
        kwargs = {k: v.to(dtype) for k, v in embeds.items()}
        with self._autocast(), self._adapters_state():
            out = self.denoiser(**{self.denoiser_input: x_t.to(dtype)}, timestep=t, **kwargs,
                                return_dict=False)[0]
        return out.float()

    def predict(self, x_t: Tensor, t: Tensor, cond: TextConditions) -> Tensor:
        t = t.to(x_t.device).expand(x_t.shape[0])
        if not cond.guided:
            return self._denoise(x_t, t, cond.embeds)
        both = {k: torch.cat([cond.negative[k], v]) for k, v in cond.embeds.items()}
        uncond, conditional = self._denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
        return uncond + cond.guidance_scale * (conditional - uncond)

    # --- the forward process ------------------------------------------------------------
    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.add_noise(x0, noise, t)

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        return self.forward_process.training_target(x0, noise, t)

    def diffusion_loss(self, x0, cond, *, noise=None, t=None, generator=None) -> Tensor:
        """The pre-training loss on the unguided conditional output."""
        return self.forward_process.diffusion_loss(self.predict, x0, cond.unguided(), noise=noise, t=t,
                                                   generator=generator)

    # --- pixels -------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        return ((self.vae_decode(latents).float() + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def encode(self, pixels: Tensor) -> Tensor:
        return self.vae_encode(pixels.to(self.device) * 2 - 1).float()

    # --- parameters, reference, persistence ------------------------------------------
    def trainable_module(self) -> torch.nn.Module:
        """The module holding the trainable weights (what ``train.sharding = "fsdp2"`` shards)."""
        return self.denoiser

    def trainable_parameters(self) -> Iterable[torch.nn.Parameter]:
        if self._is_reference:
            return []
        return [p for p in self.denoiser.parameters() if p.requires_grad]

    def named_trainable_parameters(self) -> list[tuple[str, Tensor]]:
        """By name; on the reference, the policy's names with the frozen values (see ``reference``)."""
        if self._reference_weights is not None:
            return list(self._reference_weights.items())
        return [(n, p) for n, p in self.denoiser.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {n: p.detach().clone() for n, p in self.denoiser.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: Mapping[str, Tensor]) -> None:
        expected = set(self.trainable_state_dict())
        if set(state) != expected:
            missing, extra = sorted(expected - set(state))[:3], sorted(set(state) - expected)[:3]
            raise ValueError(f"trainable weights do not match this policy (missing {missing}, "
                             f"unexpected {extra}): was the checkpoint made with other LoRA options?")
        self.denoiser.load_state_dict(dict(state), strict=False)

    def reference(self) -> DiffusersPolicy:
        """The policy as it is now, frozen: with LoRA the same network with adapters disabled
        (exact while the adapters are freshly initialized), otherwise a copy of the denoiser.

        Its ``named_trainable_parameters()``: the copy's weights under the policy's names; with LoRA,
        the adapter weights as they were at this first call (their seeded initial values)."""
        if self._reference is None:
            named = self.named_trainable_parameters()
            reference = copy.copy(self)
            reference._is_reference, reference._reference = True, None
            if self.uses_lora:
                reference._reference_weights = {name: p.detach().clone() for name, p in named}
            else:
                reference.denoiser = copy.deepcopy(self.denoiser).requires_grad_(False).eval()
                values = dict(reference.denoiser.named_parameters())
                reference._reference_weights = {name: values[name] for name, _ in named}
            self._reference = reference
        return self._reference

    def merged_denoiser(self) -> torch.nn.Module:
        """The denoiser with LoRA weights merged in (a copy), as a plain diffusers model."""
        if not self.uses_lora:
            return self.denoiser
        merged = copy.deepcopy(self.denoiser)
        merged.fuse_lora()
        merged.unload_lora()
        return merged

    def save_pretrained(self, directory: str | Path) -> None:
        """A pipeline folder (LoRA merged) that ``pretrained=`` loads back."""
        components = {**self.pipeline.components, self.denoiser_name: self.merged_denoiser()}
        self.pipeline_class(**components).save_pretrained(str(directory))

    def to(self, device: torch.device | str) -> DiffusersPolicy:
        self.pipeline.to(device)
        self.denoiser.to(device)
        self._prompt_cache = {p: {k: v.to(device) for k, v in e.items()}
                              for p, e in self._prompt_cache.items()}
        return self


@contextlib.contextmanager
def _adapters_disabled(model: torch.nn.Module):
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()


def load_pipeline(pipeline_class: type, source: str, **kwargs: Any) -> Any:
    """``pipeline_class.from_pretrained(source)`` with a clear error for a bad folder or id."""
    try:
        return pipeline_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ValueError(f"cannot load a {pipeline_class.__name__} from '{source}': {error}") from None


def flow_matching_process(scheduler: Any) -> FlowMatchingProcess:
    """The forward process of a freshly built ``FlowMatchEulerDiscreteScheduler`` (its training
    sigmas, shift applied)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    fresh = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    return FlowMatchingProcess(sigmas=fresh.sigmas.float().cpu(), scheduler_config=dict(fresh.config))
