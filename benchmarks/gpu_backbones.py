"""The backbones added for issue 22 at their real denoiser architectures, random weights: each is
saved as a pipeline folder in bf16, loaded back through the policy's ``pretrained`` path
(``mixed_precision = "bf16"``, LoRA rank 16, gradient checkpointing), checked by ``ddrl doctor``
(the pipeline-fidelity check included) and trained for a few iterations; prints the folder's
size, the seconds to save and load it, seconds per iteration and peak GPU memory.

    python benchmarks/gpu_backbones.py                           # CUDA: flux, flux2-klein, qwen-image, wan2.2
    python benchmarks/gpu_backbones.py --only wan2.2 --iterations 2
    python benchmarks/gpu_backbones.py --device cpu --layers 1 --resolution 64   # a smoke run of the script

The denoisers and VAEs are the real classes at the real configurations (diffusers' defaults for
FLUX.1 [dev], Qwen-Image and Wan 2.2's two 14B experts; FLUX.2 [klein] 4B's as published, to be
checked against the folder); the text encoders have the real width (what the denoiser reads) but
one layer, and the tokenizers are the tiny character-level ones, so nothing downloads. ``--layers``
keeps that many blocks per stack (a smoke run). The folder needs the denoiser's size in free disk
(bf16: 24 GB for FLUX.1, 40 GB for Qwen-Image, 56 GB for Wan 2.2's pair); it is deleted after each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402

from ddrl_framework.kit import tiny_text  # noqa: E402
from ddrl_framework.kit.diffusers_policy import pipeline_settings  # noqa: E402
from ddrl_framework.registry import load_registry  # noqa: E402

PROMPTS = ["a red cube on a table", "a blue sphere in the sky", "a green cone"]  # the last held out


def flux(layers: int | None) -> dict:
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    depth = {} if layers is None else {"num_layers": layers, "num_single_layers": layers}
    return {
        "transformer": FluxTransformer2DModel(guidance_embeds=True, **depth),  # FLUX.1 [dev]: 12B
        "vae": AutoencoderKL(latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                             down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                             use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611,
                             shift_factor=0.1159, sample_size=1024),
        "text_encoder": tiny_text.clip_text_model(768, 1), "text_encoder_2": tiny_text.t5_encoder(4096, 2)}


def flux2_klein(layers: int | None) -> dict:
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel

    depth = {"num_layers": layers or 5, "num_single_layers": layers or 20}  # klein 4B (as published)
    return {
        "transformer": Flux2Transformer2DModel(num_attention_heads=24, joint_attention_dim=3 * 2560,
                                               guidance_embeds=False, **depth),
        "vae": AutoencoderKLFlux2(), "text_encoder": tiny_text.qwen3_model(2560, 1, layers=3)}


def qwen_image(layers: int | None) -> dict:
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel

    depth = {} if layers is None else {"num_layers": layers}
    text = tiny_text.qwen_vl_model(3584, 1, heads=28, mrope_section=(16, 24, 24))  # Qwen2.5-VL 7B's width
    return {"transformer": QwenImageTransformer2DModel(**depth), "vae": AutoencoderKLQwenImage(),  # 20B
            "text_encoder": text}


def wan22(layers: int | None) -> dict:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    depth = {} if layers is None else {"num_layers": layers}
    return {"transformer": WanTransformer3DModel(**depth), "transformer_2": WanTransformer3DModel(**depth),
            "vae": AutoencoderKLWan(), "text_encoder": tiny_text.t5_encoder(4096, 2, umt5=True)}


BACKBONES = {"flux": flux, "flux2-klein": flux2_klein, "qwen-image": qwen_image, "wan2.2": wan22}


def save_folder(name: str, layers: int | None, device: str, folder: Path) -> str:
    """The backbone's tiny pipeline (its scheduler, tokenizers, settings) with the real-size
    components put in, built in bf16 on ``device`` and saved to ``folder``."""
    registry = load_registry()
    tiny = registry.build("policy", name, {}, "[policy]").pipeline
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            real = BACKBONES[name](layers)
    finally:
        torch.set_default_dtype(default)
    type(tiny)(**{**tiny.components, **real}, **pipeline_settings(tiny)).save_pretrained(str(folder))
    return str(folder)


def experiment(name: str, folder: str, resolution: int, frames: int) -> dict:
    height = min(resolution, 480)  # Wan: 480p videos, 832 wide
    size = ({"frames": frames, "height": height, "width": height * 832 // 480 // 16 * 16}
            if name == "wan2.2" else {"resolution": resolution})
    guidance = {"flux": {}, "wan2.2": {"guidance_scale": 4.0, "guidance_scale_2": 3.0}}.get(name, {"guidance_scale": 4.0})
    return gpu_check.experiment_data(
        None, "", seed=0,
        policy={"name": name, "pretrained": folder, "lora_rank": 16, "mixed_precision": "bf16",
                "gradient_checkpointing": True, **size, **guidance},
        sampler={"name": "flow-sde", "denoising_steps": 6},
        regularizer={"name": "forward-kl-data", "beta": 1.0},
        rewards=[{"name": "brightness"}],
        data={"name": "reference-samples", "prompts": PROMPTS, "samples_per_prompt": 1, "held_out_count": 1,
              "batch_size": 2},
        train={"groups": 1, "group_size": 2, "trained_denoising_steps": [0, 3]})


def run(name: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        began = time.perf_counter()
        folder = save_folder(name, args.layers, args.device, Path(scratch) / name)
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**30
        print(f"{name}: folder {size:.1f} GiB saved in {time.perf_counter() - began:.0f} s", flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
        data = experiment(name, folder, args.resolution, args.frames)
        gpu_check.report(f"{name} real architecture, LoRA r16 bf16, {args.resolution} px, 2 samples x 6 steps "
                         "(2 trained), forward-kl-data", data, load_registry(), args.iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=list(BACKBONES), action="append", help="these backbones (default: all)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--layers", type=int, default=None, help="blocks per stack (default: the real depth)")
    parser.add_argument("--resolution", type=int, default=1024, help="pixels per side (Wan: 480p, or this if smaller)")
    parser.add_argument("--frames", type=int, default=17, help="Wan 2.2's video length")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script (with --layers 1)")
    parser.add_argument("--scratch", default=None, help="the folder for the saved pipelines (default: the temp dir)")
    args = parser.parse_args()
    gpu_check.DEVICE = args.device
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_backbones: CUDA is not available here")
    for name in args.only or list(BACKBONES):
        run(name, args)


if __name__ == "__main__":
    main()
