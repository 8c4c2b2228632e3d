"""The CUDA check: ``ddrl doctor`` and a few training iterations of each tiny configuration and of
mid-size configurations on the GPU; prints seconds per iteration and peak memory.

    python benchmarks/gpu_check.py                # tiny configs + digits + mid-size SD1.5 / Wan
    python benchmarks/gpu_check.py --skip-mid     # tiny configs and digits only
    python benchmarks/gpu_check.py --device cpu --skip-mid --only flux   # a CPU smoke run, FLUX's tiny configs

Mid-size means the real architectures at random weights (nothing is downloaded): the SD 1.5 UNet
and VAE (860M + 84M parameters) with a 2-layer text encoder of CLIP-L's width at 512 px, and the
Wan2.1-T2V-1.3B transformer and VAE with a 2-layer UMT5 of the real width, on 9-frame 240x416
videos. Run it whenever a GPU is at hand and record the output in docs/performance.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddrl_framework.registry import load_registry  # noqa: E402
from ddrl_framework.running.components import build_components  # noqa: E402
from ddrl_framework.running.config import structure_experiment, to_dict  # noqa: E402
from ddrl_framework.running.doctor import make_probe, run_checks  # noqa: E402
from ddrl_framework.running.loader import load_experiment  # noqa: E402
from ddrl_framework.running.pretrain import pretrain_if_needed  # noqa: E402
from ddrl_framework.running.trainer import Trainer  # noqa: E402

DEVICE = "cuda"  # --device cpu: a smoke run of the script itself
TINY_CONFIGS = ("sd-tiny.toml", "sd3-tiny.toml", "flux-tiny.toml", "flux2-klein-tiny.toml", "qwen-image-tiny.toml",
                "wan-tiny.toml", "wan22-tiny.toml")
PROMPTS = ["a red cube on a table", "a blue sphere in the sky", "a green cone", "a cat on a sofa"]


def experiment_data(config: str | None, folder: str, *, arm: str | None = None,
                    overrides: Sequence[str] = (), **sections) -> dict:
    """The experiment of configs/CONFIG (or of its arm ARM) with ``overrides``, read by the one
    loader, as plain data; then ``sections`` and this script's train settings."""
    data = to_dict(load_experiment(ROOT / "configs" / config, overrides, arm=arm)) if config else {}
    for key, value in sections.items():  # tables merge into the config's; a regularizer replaces it
        merge = key in ("policy", "train", "pretrain") and isinstance(data.get(key), dict)
        data[key] = {**data[key], **value} if merge else value
    data["output_dir"] = folder
    data.setdefault("train", {}).update(device=DEVICE, eval_every=0, grid_samples=0, checkpoint_every=0,
                                        eval_samples=8, eval_batch_size=4)
    return data


def doctor(data: dict, registry) -> str:
    experiment = structure_experiment(data, "gpu_check")
    pretrain_if_needed(experiment, registry, show_progress=False)
    parts = build_components(experiment, registry, torch.device(DEVICE), show_progress=False)
    results = run_checks(make_probe(parts, 4, 0, torch.device(DEVICE)))
    failed = [f"{r.name}: {r.value}" for r in results if r.status == "FAIL"]
    ratio = next(r.value for r in results if r.name.startswith("on-policy"))
    match = next(r.value for r in results if r.name.startswith("zero noise"))
    fidelity = next((f"; pipeline {r.value} {r.status}" for r in results if "pipeline.__call__" in r.name), "")
    return f"doctor {'PASS' if not failed else 'FAIL ' + '; '.join(failed)} ({ratio}; scheduler {match}{fidelity})"


def train(data: dict, registry, iterations: int) -> tuple[float, float, dict]:
    """Median seconds per iteration after the first, peak GPU memory in GiB, the last record."""
    data["train"]["iterations"] = iterations
    cuda = DEVICE == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(structure_experiment(data, "gpu_check"), registry, show_progress=False)
    trainer.run()
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    seconds = [r["seconds"] for r in trainer.records]
    return statistics.median(seconds[1:] or seconds), peak, trainer.records[-1]


def report(name: str, data: dict, registry, iterations: int) -> None:
    began = time.perf_counter()
    try:
        print(f"{name}: {doctor(data, registry)}", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            data["output_dir"] = folder
            median, peak, last = train(data, registry, iterations)
        memory = f"peak {peak:.2f} GiB" if peak == peak else "peak memory n/a on CPU"
        print(f"{name}: {median:.3f} s/iteration, {memory}, reward {last['reward_mean']:.4f}, "
              f"ratio_first_step {last['ratio_first_step']}, {time.perf_counter() - began:.0f} s in all", flush=True)
    except Exception as error:
        print(f"{name}: FAILED {type(error).__name__}: {error}", flush=True)
        traceback.print_exc(limit=3)


def sd15_shaped_pipeline(folder: Path) -> str:
    """The SD 1.5 architecture at random weights, saved as a pipeline folder."""
    from diffusers import (
        AutoencoderKL,
        DDPMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    from ddrl_framework.kit import tiny_text

    torch.manual_seed(0)
    text = tiny_text.clip_text_model(768, 1)  # 2 layers of CLIP-L's width
    pipeline = StableDiffusionPipeline(
        unet=UNet2DConditionModel(sample_size=64, cross_attention_dim=768),
        vae=AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                          sample_size=512),
        text_encoder=text, tokenizer=tiny_text.clip_tokenizer(),
        scheduler=DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                clip_sample=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipeline.save_pretrained(folder)
    return str(folder)


def wan13b_shaped_pipeline(folder: Path) -> str:
    """The Wan2.1-T2V-1.3B transformer and VAE at random weights, a 2-layer UMT5 of the real width."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import UMT5Config, UMT5EncoderModel

    from ddrl_framework.kit import tiny_text

    torch.manual_seed(0)
    pipeline = WanPipeline(
        transformer=WanTransformer3DModel(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                                          num_layers=30, text_dim=4096),
        vae=AutoencoderKLWan(), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        text_encoder=UMT5EncoderModel(UMT5Config(vocab_size=40, d_model=4096, d_kv=64, d_ff=10240,
                                                 num_layers=2, num_heads=64)),
        tokenizer=tiny_text.t5_tokenizer(32))
    pipeline.save_pretrained(folder)
    return str(folder)


def mid_size(registry, iterations: int, scratch: Path) -> None:
    base = {"rewards": [{"name": "brightness"}], "train": {"groups": 2, "group_size": 4},
            "data": {"name": "reference-samples", "prompts": PROMPTS, "samples_per_prompt": 2,
                     "held_out_count": 2, "batch_size": 8}}
    began = time.perf_counter()
    sd = sd15_shaped_pipeline(scratch / "sd15")
    print(f"sd15-shaped pipeline built and saved in {time.perf_counter() - began:.0f} s", flush=True)
    for label, extra in [("LoRA r16 bf16", {"lora_rank": 16, "mixed_precision": "bf16"}),
                         ("full bf16 autocast", {"mixed_precision": "bf16", "gradient_checkpointing": True})]:
        data = experiment_data(None, "", seed=0, policy={"name": "stable-diffusion", "pretrained": sd,
                               "resolution": 512, "guidance_scale": 4.5, **extra},
                               sampler={"name": "ddim-sde", "denoising_steps": 10, "eta": 1.0},
                               regularizer={"name": "forward-kl-data", "beta": 1.0}, **base)
        report(f"sd15-shaped 512px {label}, 8 samples x 10 steps, CFG 4.5", data, registry, iterations)
    began = time.perf_counter()
    wan = wan13b_shaped_pipeline(scratch / "wan")
    print(f"wan-1.3B-shaped pipeline built and saved in {time.perf_counter() - began:.0f} s", flush=True)
    data = experiment_data(None, "", seed=0, policy={
        "name": "wan", "pretrained": wan, "frames": 9, "height": 240, "width": 416, "guidance_scale": 5.0,
        "lora_rank": 16, "mixed_precision": "bf16", "gradient_checkpointing": True},
        sampler={"name": "flow-sde", "denoising_steps": 10}, regularizer={"name": "reverse-kl", "beta": 0.01},
        **{**base, "train": {"groups": 1, "group_size": 4, "trained_denoising_steps": [0, 3, 6, 9]}})
    report("wan-1.3B-shaped 9x240x416 LoRA r16 bf16, 4 samples x 10 steps (4 trained), CFG 5",
           data, registry, iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--skip-mid", action="store_true")
    parser.add_argument("--skip-tiny", action="store_true")
    parser.add_argument("--only", default="", metavar="TEXT", help="the tiny configs whose name contains TEXT")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of this script")
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda":
        if not torch.cuda.is_available():
            sys.exit("gpu_check: CUDA is not available here")
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, "
              f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB", flush=True)
    registry = load_registry()
    tiny = () if args.skip_tiny else [c for c in TINY_CONFIGS if args.only in c]
    for config in tiny:
        for regularizer in ("none", "reverse-kl", "forward-kl-data"):
            data = experiment_data(config, "", regularizer={"name": regularizer})
            report(f"{config} {regularizer}", data, registry, args.iterations)
    data = experiment_data("digits-brightness.toml", "", arm="forward-kl-data",
                           overrides=["pretrain.optimizer_steps=0", "metrics=[]"])
    if not args.skip_tiny:
        report("digits (0.65M UNet, 64 samples x 10 steps) forward-kl-data", data, registry, args.iterations)
    if not args.skip_mid:
        with tempfile.TemporaryDirectory() as scratch:
            mid_size(registry, args.iterations, Path(scratch))


if __name__ == "__main__":
    main()
