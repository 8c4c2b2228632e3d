"""What every text-conditioned diffusers backbone shares: the policy adapter for a diffusers
pipeline's denoiser (UNet or transformer), VAE and text encoders.

A backbone plugin subclasses :class:`DiffusersPolicy` and supplies four things: how to encode
prompts (``encode_prompts``), how the VAE maps pixels to latents and back (``vae_encode`` /
``vae_decode``), and the name of the denoiser's input argument. Everything else is here:

* classifier-free guidance in ``predict`` (``guidance_scale`` at most 1: off, as in the pipelines), the guided output being
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
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import torch
from torch import Tensor

from ddrl_framework.kit.forward_process import (
    DdpmProcess,
    FlowMatchingProcess,
    ForwardProcessDelegation,
    check_flow_scheduler,
)
from ddrl_framework.kit.lora_targets import ATTENTION
from ddrl_framework.kit.prompt_rows import stack_rows
from ddrl_framework.kit.vae_codec import SCALED
from ddrl_framework.types import DataBatch


@attrs.frozen(kw_only=True)
class TextConditions:
    """Per-sample text embeddings (keyword arguments of the denoiser, each ``[B, ...]``), and the
    negative-prompt embeddings when guidance is on."""

    embeds: Mapping[str, Tensor]
    negative: Mapping[str, Tensor] | None = None
    guidance_scale: float = 1.0

    @property
    def guided(self) -> bool:
        return self.negative is not None and self.guidance_scale > 1  # as the pipelines: CFG above 1

    def unguided(self) -> TextConditions:
        return TextConditions(embeds=self.embeds)


@attrs.frozen(kw_only=True)
class TrainingOptions:
    """How the denoiser is fine-tuned: the options every diffusers policy plugin accepts."""

    lora_rank: int = 0  # 0: full fine-tuning of the denoiser
    lora_alpha: float | None = None  # None: equal to the rank
    lora_target_modules: tuple[str, ...] | None = None  # None: the backbone's preset (kit.lora_targets)
    lora_seed: int = 0  # the adapters' initial weights
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "bf16"] = "no"  # "bf16": autocast the denoiser; frozen weights (and folders) in bf16
    guidance_scale: float = 1.0  # classifier-free guidance in rollouts; at most 1: off, as in the pipelines
    negative_prompt: str = ""

    @property
    def guided(self) -> bool:
        """Whether rollouts use classifier-free guidance: a scale above 1, as in the pipelines."""
        return self.guidance_scale > 1


class DiffusersPolicy(ForwardProcessDelegation):
    """Base class; see the module docstring. ``components`` are the pipeline's, by name."""

    pipeline_class: type = type(None)  # the diffusers pipeline that saves and loads the folder
    denoiser_name: str = "transformer"  # the denoiser's key in ``components``
    denoiser_input: str = "hidden_states"  # the name of the denoiser's latent argument
    timestep_scale: float = 1.0  # the denoiser's timestep is t * this (t on 0..T; FLUX takes t / 1000)
    max_sequence_length: int | None = None  # text tokens per prompt, where the pipeline takes the option
    text_mask_key: str | None = None  # the denoiser's text-mask argument, where prompts vary in length
    lora_targets: tuple[str, ...] = ATTENTION  # LoRA's default target_modules
    vae_codec: Any = SCALED  # how latents are normalized (kit.vae_codec: SCALED, STANDARDIZED, PATCHED_BATCH_NORM)
    lossless_codec = False  # a VAE round trip is not the identity

    def __init__(self, pipeline: Any, forward_process: Any, sample_shape: tuple[int, ...],
                 pixel_shape: tuple[int, ...], options: TrainingOptions, **settings: Any):
        for name, value in settings.items():  # this policy's values of class settings (max_sequence_length, ...)
            if not hasattr(type(self), name):
                raise TypeError(f"{type(self).__name__} has no setting '{name}'")
            setattr(self, name, value)
        self.pipeline = pipeline
        self.forward_process = forward_process  # DdpmProcess or FlowMatchingProcess
        self.sample_shape = tuple(sample_shape)  # one latent
        self.pixel_shape = tuple(pixel_shape)  # what ``decode`` returns for one latent
        self.options = options
        # eval mode throughout: dropout would make the training pass differ from the rollout (ratio != 1)
        self.denoiser: torch.nn.Module = self.make_denoiser(pipeline).eval()
        self._prompt_cache: dict[str, dict[str, Tensor]] = {}
        self._is_reference = False
        self._reference: DiffusersPolicy | None = None
        # on the reference view: the policy's trainable weights by name, frozen (a snapshot for LoRA)
        self._reference_weights: dict[str, Tensor] | None = None
        self._freeze_all_but_denoiser()
        if options.lora_rank > 0:
            self._add_lora()
        self._trainable_in_float32()
        if options.gradient_checkpointing:
            self.denoiser.enable_gradient_checkpointing()

    @classmethod
    def load_or_tiny(cls, pretrained: str | None, tiny: Callable[[], Any], options: TrainingOptions,
                     **load_options: Any) -> Any:
        """The builder's pipeline: a folder or hub id loaded with ``pipeline_class.from_pretrained`` in
        the dtypes ``options`` keep (:func:`load_pipeline`), or ``tiny()`` without ``pretrained``."""
        return tiny() if pretrained is None else load_pipeline(cls.pipeline_class, pretrained, options, **load_options)

    # --- set-up -------------------------------------------------------------------------
    def make_denoiser(self, pipeline: Any) -> torch.nn.Module:
        """The trained network: the pipeline's ``denoiser_name`` component (Wan 2.2: its two experts,
        ``kit.experts.TimestepExperts``)."""
        return getattr(pipeline, self.denoiser_name)

    def denoiser_components(self, denoiser: torch.nn.Module) -> dict[str, torch.nn.Module]:
        """The pipeline components ``denoiser`` stands for, by name (what ``save_pretrained`` replaces)."""
        return {self.denoiser_name: denoiser}

    def _frozen_modules(self) -> list[torch.nn.Module]:
        trained = {id(m) for m in self.denoiser.modules()}
        modules = self.pipeline.components.values()
        return [m for m in modules if isinstance(m, torch.nn.Module) and id(m) not in trained]

    def _freeze_all_but_denoiser(self) -> None:
        for module in self._frozen_modules():
            module.requires_grad_(False).eval()
            if self.options.mixed_precision == "bf16" and _floating_dtypes(module) != {torch.bfloat16}:
                torch.nn.Module.to(module, torch.bfloat16)  # not loaded in bf16 (torch's to: no diffusers warning)

    def _trainable_in_float32(self) -> None:
        """The weights the optimizer updates stay float32 whatever the base's dtype (a bf16 folder's LoRA
        adapters come out bf16); the denoiser's frozen base weights keep theirs."""
        for parameter in self.denoiser.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()

    def _add_lora(self) -> None:
        from peft import LoraConfig

        o = self.options
        if not hasattr(self.denoiser, "add_adapter"):
            raise ValueError(f"lora_rank = {o.lora_rank}: the denoiser {type(self.denoiser).__name__} takes no peft "
                             "adapters (diffusers gives it no add_adapter); set lora_rank = 0 to fine-tune it whole")
        self.denoiser.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(o.lora_seed)
            self.denoiser.add_adapter(LoraConfig(
                r=o.lora_rank, lora_alpha=o.lora_alpha or o.lora_rank,
                target_modules=list(o.lora_target_modules or self.lora_targets), init_lora_weights=True))

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
        """Pixels in [-1, 1] to normalized latents (default: ``vae_codec`` on the pipeline's VAE)."""
        return self.vae_codec.encode(self.pipeline.vae, pixels)

    def vae_decode(self, latents: Tensor) -> Tensor:
        """Normalized latents to pixels in [-1, 1] (default: ``vae_codec`` on the pipeline's VAE)."""
        return self.vae_codec.decode(self.pipeline.vae, latents)

    # --- the denoiser interface: how the network is called -------------------------------
    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds: Mapping[str, Tensor]) -> dict[str, Any]:
        """The denoiser's keyword arguments for latents ``x_t`` (``[B, *sample_shape]``, in the
        denoiser's dtype), network timesteps ``t`` (``[B]``, on the forward process's scale: 0..T)
        and the prompt embeddings ``encode_prompts`` returned (``[B, ...]`` each).

        The default: ``{denoiser_input: x_t, "timestep": t * timestep_scale, **embeds}``. A backbone
        whose network takes more (FLUX's packed tokens and position ids, a guidance input) overrides
        this and :meth:`read_output`."""
        return {self.denoiser_input: x_t, "timestep": t * self.timestep_scale, **embeds}

    def read_output(self, output: Tensor, x_t: Tensor) -> Tensor:
        """The prediction in ``x_t``'s layout from the denoiser's first output (default: as it is)."""
        return output

    def to_pipeline_latents(self, x: Tensor) -> Tensor:
        """Latents in the layout the pipeline's ``__call__(latents=...)`` takes (default: as they are)."""
        return x

    def from_pipeline_latents(self, latents: Tensor) -> Tensor:
        """The pipeline's latents inside its denoising loop (what its step callback sees) in the
        policy's layout (default: as they are). Usually the inverse of :meth:`to_pipeline_latents`;
        FLUX.2 takes ``latents`` as a grid and packs them into tokens itself."""
        return latents

    def from_pipeline_output(self, latents: Tensor) -> Tensor:
        """What ``__call__(output_type="latent")`` returns, in the policy's layout (default: the loop's
        latents, :meth:`from_pipeline_latents`; FLUX.2 returns the VAE's own latents instead)."""
        return self.from_pipeline_latents(latents)

    def pipeline_call_options(self) -> dict[str, Any]:
        """Keyword arguments of the pipeline's ``__call__`` that make it sample as this policy's rollouts
        do (guidance, text length, size): the pipeline-fidelity check's side of the comparison."""
        options: dict[str, Any] = {"guidance_scale": self.options.guidance_scale}
        if self.max_sequence_length is not None:
            options["max_sequence_length"] = self.max_sequence_length
        if len(self.pixel_shape) == 4:  # a video: [C, T, H, W]
            options["num_frames"] = self.pixel_shape[1]
        options.update(height=self.pixel_shape[-2], width=self.pixel_shape[-1])
        return options

    def true_cfg_call_options(self) -> dict[str, Any]:
        """The ``__call__`` options of pipelines whose classifier-free guidance is ``true_cfg_scale``
        with a negative prompt (FLUX, Qwen-Image), for this policy's guidance."""
        options: dict[str, Any] = {"true_cfg_scale": self.options.guidance_scale}
        if self.options.guided:
            options["negative_prompt"] = self.options.negative_prompt
        return options

    # --- conditions -------------------------------------------------------------------
    @torch.no_grad()
    def _embeddings(self, prompts: Sequence[str]) -> dict[str, Tensor]:
        for prompt in dict.fromkeys(p for p in prompts if p not in self._prompt_cache):
            # one prompt at a time: an embedding must not depend on which prompts came with it
            self._prompt_cache[prompt] = self.encode_prompts([prompt])
        return stack_rows([self._prompt_cache[p] for p in prompts], self.text_mask_key)

    def encode_conditions(self, batch: DataBatch) -> TextConditions:
        embeds = self._embeddings(batch.prompts)
        if not self.options.guided:
            return TextConditions(embeds=embeds)
        negative = self._embeddings([self.options.negative_prompt] * len(batch))
        return TextConditions(embeds=embeds, negative=negative, guidance_scale=self.options.guidance_scale)

    # --- the network --------------------------------------------------------------------
    def autocast(self):
        """The precision the denoiser runs at: bf16 autocast with ``mixed_precision = "bf16"``, else off
        (the fidelity check runs the pipeline under it too)."""
        enabled = self.options.mixed_precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    @property
    def compute_dtype(self) -> torch.dtype:
        """What the denoiser computes in: bf16 under ``mixed_precision = "bf16"``, else its weights' dtype."""
        return torch.bfloat16 if self.options.mixed_precision == "bf16" else next(self.denoiser.parameters()).dtype

    def _adapters_state(self):
        if self._is_reference and self.uses_lora:
            return _adapters_disabled(self.denoiser)
        return contextlib.nullcontext()

    def _denoise(self, x_t: Tensor, t: Tensor, embeds: Mapping[str, Tensor]) -> Tensor:
        dtype = next(self.denoiser.parameters()).dtype
        embeds = {k: v.to(dtype) if v.is_floating_point() else v for k, v in embeds.items()}  # masks stay
        inputs = self.denoiser_inputs(x_t.to(dtype), t, embeds)
        with self.autocast(), self._adapters_state():
            out = self.denoiser(**inputs, return_dict=False)[0]
        return self.read_output(out, x_t).float()

    def predict(self, x_t: Tensor, t: Tensor, cond: TextConditions) -> Tensor:
        t = t.to(x_t.device).expand(x_t.shape[0])
        if not cond.guided:
            return self._denoise(x_t, t, cond.embeds)
        both = stack_rows([cond.negative, cond.embeds], self.text_mask_key)
        uncond, conditional = self._denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), both).chunk(2)
        return self.combine_guidance(uncond, conditional, self.guidance_scale_at(t, cond.guidance_scale, x_t))

    def guidance_scale_at(self, t: Tensor, scale: float, like: Tensor) -> float | Tensor:
        """The guidance scale at network timesteps ``t`` (``[B]``): ``scale`` throughout (Wan 2.2 A14B:
        a second scale for its low-noise expert, per sample, broadcastable to ``like``)."""
        return scale

    def combine_guidance(self, uncond: Tensor, conditional: Tensor, scale: float | Tensor) -> Tensor:
        """Classifier-free guidance: ``uncond + scale (conditional - uncond)`` (Qwen-Image rescales it)."""
        return uncond + scale * (conditional - uncond)

    # --- the forward process ------------------------------------------------------------
    def diffusion_loss(self, x0, cond, *, noise=None, t=None, generator=None) -> Tensor:
        """The pre-training loss on the unguided conditional output."""
        return super().diffusion_loss(x0, cond.unguided(), noise=noise, t=t, generator=generator)

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
        components = {**self.pipeline.components, **self.denoiser_components(self.merged_denoiser())}
        self.pipeline_class(**components, **pipeline_settings(self.pipeline)).save_pretrained(str(directory))

    def to(self, device: torch.device | str) -> DiffusersPolicy:
        self.pipeline.to(device)
        self.denoiser.to(device)
        self._prompt_cache = {p: {k: v.to(device) for k, v in e.items()}
                              for p, e in self._prompt_cache.items()}
        return self


def _floating_dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {p.dtype for p in module.parameters() if p.is_floating_point()}


@contextlib.contextmanager
def _adapters_disabled(model: torch.nn.Module):
    model.disable_adapters()
    try:
        yield
    finally:
        model.enable_adapters()


def pipeline_settings(pipeline: Any) -> dict[str, Any]:
    """The pipeline's own settings, not components (Wan 2.2's ``boundary_ratio``, ``expand_timesteps``)."""
    accepted = inspect.signature(type(pipeline).__init__).parameters
    return {k: v for k, v in pipeline.config.items()
            if k in accepted and k not in pipeline.components and not k.startswith("_")}


DENOISER_COMPONENTS = ("unet", "transformer", "transformer_2")  # the names diffusers pipelines give denoisers


def load_dtypes(options: TrainingOptions | None) -> dict[str, torch.dtype] | None:
    """``from_pretrained``'s ``torch_dtype`` for ``options``: with ``mixed_precision = "bf16"`` every
    component loads in bf16 (no float32 copy of a 20B model on the way), except a denoiser that
    trains whole (float32 weights for the optimizer); None (float32) otherwise."""
    if options is None or options.mixed_precision != "bf16":
        return None
    whole = {} if options.lora_rank > 0 else dict.fromkeys(DENOISER_COMPONENTS, torch.float32)
    return {"default": torch.bfloat16, **whole}


def load_pipeline(pipeline_class: type, source: str, options: TrainingOptions | None = None, **kwargs: Any) -> Any:
    """``pipeline_class.from_pretrained(source)`` in the dtypes ``options`` keep (:func:`load_dtypes`),
    with a clear error for a bad folder or id."""
    dtypes = load_dtypes(options)
    if dtypes is not None:
        kwargs[_dtype_keyword()] = dtypes
    try:
        return pipeline_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError, EnvironmentError) as error:
        raise ValueError(f"cannot load a {pipeline_class.__name__} from '{source}': {error}") from None


def _dtype_keyword() -> str:
    """``dtype`` where diffusers takes it (``torch_dtype`` is deprecated there), else ``torch_dtype``."""
    from diffusers.pipelines import pipeline_utils

    return "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"


def image_shapes(vae: Any, resolution: int, multiple: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(sample_shape, pixel_shape)`` of square images ``resolution`` pixels on a side for an
    ``AutoencoderKL``-style ``vae``: latents ``[latent_channels, side, side]``, ``side`` a multiple of
    ``multiple`` (2 where the denoiser packs 2x2 patches)."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    side = resolution // (factor * multiple) * multiple
    return (vae.config.latent_channels, side, side), (3, side * factor, side * factor)


def flow_matching_process(scheduler: Any, *, mu: float | None = None, pipeline_sigmas: bool = False,
                          step_mu: Callable[[int], float] | None = None) -> FlowMatchingProcess:
    """The forward process of the pipeline's flow-matching ``scheduler``: its training sigmas (shift
    applied, and the pipeline's resolution-dependent ``mu`` where it uses one) and what the
    pipeline passes to ``set_timesteps`` (``mu``, or ``step_mu(N)`` where it depends on the step
    count N; ``pipeline_sigmas``: ``linspace(1, 1/N, N)``).
    A scheduler option the samplers cannot honour is a ``ValueError`` naming it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = dict(scheduler.config)
    check_flow_scheduler(config, mu)
    fresh = FlowMatchEulerDiscreteScheduler.from_config(config)
    sigmas = fresh.sigmas.float().cpu()
    if config.get("use_dynamic_shifting"):  # construction leaves them unshifted; the pipeline shifts by mu
        sigmas = fresh.time_shift(mu, 1.0, sigmas).float()
    return FlowMatchingProcess(sigmas=sigmas, scheduler_config=dict(fresh.config), mu=mu,
                               pipeline_sigmas=pipeline_sigmas, step_mu=step_mu)


def ddpm_process(scheduler: Any, *, prediction_type: str | None = None,
                 clip_sample: bool | None = None) -> DdpmProcess:
    """The DDPM forward process of the pipeline's ``scheduler`` config (a DDPM, DDIM or DPM-Solver
    one): ``alphas_cumprod`` as ``DDPMScheduler`` computes them from its betas, the prediction type,
    ``steps_offset``, and ``clip_sample`` where the config has it (DPM-Solver's has none: no
    clipping, where ``DDPMScheduler``'s own default would clip). ``prediction_type`` and
    ``clip_sample`` override the config."""
    from diffusers import DDPMScheduler

    config = scheduler.config
    ddpm = DDPMScheduler.from_config(config)
    return DdpmProcess(alphas_cumprod=ddpm.alphas_cumprod.float(),
                       prediction_type=prediction_type or ddpm.config.prediction_type,
                       clip_sample=bool(config.get("clip_sample", False)) if clip_sample is None else clip_sample,
                       steps_offset=int(ddpm.config.get("steps_offset", 0)))


def dynamic_shift(scheduler_config: Mapping[str, Any], image_tokens: int) -> float:
    """The ``mu`` FluxPipeline and QwenImagePipeline compute for ``image_tokens`` (diffusers'
    ``calculate_shift``, from the scheduler config's ``base/max_image_seq_len`` and ``base/max_shift``)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    c = scheduler_config
    return float(calculate_shift(image_tokens, c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096),
                                 c.get("base_shift", 0.5), c.get("max_shift", 1.15)))
