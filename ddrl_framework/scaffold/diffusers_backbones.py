"""``ddrl new-plugin policy NAME --diffusers PIPELINE``: what differs between diffusers pipelines,
for the pipelines the scaffold knows.

A generated backbone subclasses ``DiffusersPolicy`` (``kit/diffusers_policy.py``) and is tested
against its pipeline's own ``__call__`` (the fidelity check). That only works when the scaffold
knows how the pipeline encodes text, calls its network, and what a tiny random configuration of
its classes looks like: a :class:`Recipe` says so. A pipeline without one is refused, pointing at
docs/backbones.md's complete example, rather than written as a stub whose tests fail.
"""

from __future__ import annotations

import difflib
import re
from typing import Literal

import attrs

from ddrl_framework.errors import UserError

SAMPLERS = {"ddpm": "ddim-sde", "flow-matching": "flow-sde"}  # the sampler of each forward process

# the forward process of each kind: the imports it needs, and the body of ``forward_process(pipeline)``
DDPM_IMPORTS = """\
from ddrl_framework.kit.diffusers_policy import DiffusersPolicy, TrainingOptions, ddpm_process, image_shapes"""

DDPM_PROCESS = """\
    return ddpm_process(pipeline.scheduler)  # a DPM-Solver folder's config has no clip_sample: no clipping"""

FLOW_IMPORTS = """\
from ddrl_framework.kit.diffusers_policy import (
    DiffusersPolicy,
    TrainingOptions,
    flow_matching_process,
    image_shapes,
)"""

FLOW_PROCESS = """\
    return flow_matching_process(pipeline.scheduler)  # its shifted sigmas"""


@attrs.frozen(kw_only=True)
class Recipe:
    """The lines of a generated backbone that depend on its pipeline (Python source, indented as
    the template places them)."""

    pipeline: str  # the diffusers pipeline class
    process: Literal["ddpm", "flow-matching"]
    imports: tuple[str, ...]  # diffusers names besides the pipeline
    attributes: str  # class attributes of the policy
    encode_prompts: str  # the body of ``encode_prompts(self, prompts)``
    tiny_pipeline: str  # the body of ``tiny_pipeline(seed)``
    resolution: str  # the default pixels per side, from ``pipeline`` (and ``pretrained``)
    methods: str = ""  # denoiser-interface overrides, where the defaults differ from ``__call__``

    @property
    def sampler(self) -> str:
        return SAMPLERS[self.process]


PIXART_SIGMA = Recipe(
    pipeline="PixArtSigmaPipeline", process="ddpm",
    imports=("DDPMScheduler", "PixArtTransformer2DModel"),
    attributes='''\
    denoiser_name = "transformer"
    max_sequence_length = 300  # T5 tokens, as the pipeline's default''',
    encode_prompts='''\
        embeds, mask, _, _ = self.pipeline.encode_prompt(  # clean_caption: __call__'s default
            list(prompts), do_classifier_free_guidance=False, device=self.device,
            max_sequence_length=self.max_sequence_length, clean_caption=True)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}''',
    methods='''\
    def denoiser_inputs(self, x_t: Tensor, t: Tensor, embeds) -> dict[str, Any]:
        return {"hidden_states": x_t, "timestep": t, **embeds,
                "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}

    def read_output(self, output: Tensor, x_t: Tensor) -> Tensor:
        return output[:, : x_t.shape[1]]  # the epsilon half; the other half is the learned variance

    def pipeline_call_options(self) -> dict[str, Any]:
        return {**super().pipeline_call_options(), "use_resolution_binning": False}
''',
    tiny_pipeline='''\
    """16x16 pixels, 4x8x8 latents."""
    def transformer():
        return PixArtTransformer2DModel(
            sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2,
            caption_channels=32, in_channels=4, cross_attention_dim=16, out_channels=8, attention_bias=True,
            activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
            norm_elementwise_affine=False, norm_eps=1e-6)

    return PixArtSigmaPipeline(
        transformer=seeded(seed, transformer), vae=tiny_vae.autoencoder_kl(seed + 1, scaling_factor=0.13025),
        scheduler=DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02, clip_sample=False),
        text_encoder=tiny_text.t5_encoder(32, seed + 2), tokenizer=tiny_text.t5_tokenizer())''',
    resolution="pipeline.transformer.config.sample_size * pipeline.vae_scale_factor",
)

AURA_FLOW = Recipe(
    pipeline="AuraFlowPipeline", process="flow-matching",
    imports=("AuraFlowTransformer2DModel", "FlowMatchEulerDiscreteScheduler"),
    attributes='''\
    denoiser_name = "transformer"
    timestep_scale = 1 / 1000  # the pipeline passes t / 1000: the network takes sigma
    max_sequence_length = 256  # UMT5 tokens, as the pipeline's default''',
    encode_prompts='''\
        embeds, _, _, _ = self.pipeline.encode_prompt(  # padding zeroed by its mask; the network takes none
            list(prompts), do_classifier_free_guidance=False, device=self.device,
            max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds}''',
    tiny_pipeline='''\
    """32x32 pixels, 4x16x16 latents."""
    def transformer():
        return AuraFlowTransformer2DModel(
            sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_mmdit_layers=1,
            num_single_dit_layers=1, attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
            caption_projection_dim=16, pos_embed_max_size=64)

    return AuraFlowPipeline(
        transformer=seeded(seed, transformer), vae=tiny_vae.autoencoder_kl(seed + 1, scaling_factor=0.13025),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.73),
        text_encoder=tiny_text.t5_encoder(32, seed + 2, umt5=True), tokenizer=tiny_text.t5_tokenizer())''',
    resolution="32 if pretrained is None else 1024  # the tiny one's; __call__'s default height",
)

RECIPES = {recipe.pipeline: recipe for recipe in (PIXART_SIGMA, AURA_FLOW)}


def recipe_for(pipeline: str) -> Recipe:
    """The recipe of diffusers' ``pipeline`` class; a :class:`UserError` naming what would be right."""
    if pipeline in RECIPES:
        return RECIPES[pipeline]
    known = ", ".join(sorted(RECIPES))
    import diffusers

    if not hasattr(diffusers, pipeline):
        close = difflib.get_close_matches(pipeline, [*RECIPES, *dir(diffusers)], n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"new-plugin --diffusers: diffusers {diffusers.__version__} has no class "
                        f"'{pipeline}'{hint}; the scaffold knows {known}")
    raise UserError(f"new-plugin --diffusers: the scaffold does not know {pipeline} (how it encodes text, calls "
                    f"its network, and a tiny random configuration of its classes), so its package would not "
                    f"pass its own tests. It knows {known}. For {pipeline}, start from docs/backbones.md's "
                    "complete example (a backbone in one module) and its 'Testing a backbone' steps")


def recipe_values(recipe: Recipe, names: dict[str, str]) -> dict[str, str]:
    """The template values of a diffusers backbone, beside the plugin's ``names``: the recipe's
    lines, its forward process and sampler, and the second module (the implementation)."""
    ddpm = recipe.process == "ddpm"
    impl_module = f"{names['module']}_pipeline"
    return {
        "pipeline": recipe.pipeline, "diffusers_imports": ", ".join(sorted({recipe.pipeline, *recipe.imports})),
        "typing_import": "\nfrom typing import Any\n" if re.search(r"\bAny\b", recipe.methods) else "",
        "attributes": recipe.attributes, "encode_prompts": recipe.encode_prompts,
        "methods": "\n" + recipe.methods if recipe.methods else "", "tiny_pipeline": recipe.tiny_pipeline,
        "resolution": recipe.resolution, "forward_process": recipe.process,
        "process_body": DDPM_PROCESS if ddpm else FLOW_PROCESS, "kit_imports": DDPM_IMPORTS if ddpm else FLOW_IMPORTS,
        "sampler": recipe.sampler, "sampler_cls": "".join(part.capitalize() for part in recipe.sampler.split("-")),
        "impl_module": impl_module, "py_modules": f'"{names["module"]}", "{impl_module}"',
        "usage": f'[policy]\nname = "{names["name"]}"\n\n[sampler]\nname = "{recipe.sampler}"',
    }
