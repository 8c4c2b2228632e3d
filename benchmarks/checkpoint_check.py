"""Checkpoints on a device: exact resume of a LoRA run, the DDP and FSDP2 layouts under a real
process group with a checkpoint written by one and loaded by the other, and the save / load time
of an SD 1.5-sized UNet with its AdamW state. Prints one line per check.

    python benchmarks/checkpoint_check.py                 # on CUDA (NCCL)
    python benchmarks/checkpoint_check.py --device cpu --skip-large   # a smoke run (gloo)
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddrl_framework.distributed.sharding import Ddp, Fsdp2, Layout, full_tensor  # noqa: E402
from ddrl_framework.distributed.world import World  # noqa: E402
from ddrl_framework.registry import load_registry  # noqa: E402
from ddrl_framework.running.checkpoint import load_training_state, save_training_state  # noqa: E402
from ddrl_framework.running.loader import load_experiment  # noqa: E402
from ddrl_framework.running.trainer import Trainer  # noqa: E402


def lora_run(device: str, folder: Path, iterations: int, resume: bool = False) -> list[dict]:
    experiment = load_experiment(ROOT / "configs" / "sd3-tiny.toml", [
        "policy.lora_rank=4", f"output_dir={folder}", f"train.device={device}",
        f"train.iterations={iterations}", "train.checkpoint_every=1", "train.eval_every=0",
        "train.grid_samples=0"])
    trainer = Trainer(experiment, load_registry(), resume=resume, show_progress=False)
    trainer.run()
    return [{k: v for k, v in r.items() if k != "seconds"} for r in trainer.records]


def check_exact_resume(device: str, scratch: Path) -> None:
    straight = lora_run(device, scratch / "straight", 3)
    lora_run(device, scratch / "resumed", 2)
    resumed = lora_run(device, scratch / "resumed", 3, resume=True)
    keys = [k for k, v in straight[-1].items() if isinstance(v, float)]
    worst = max(abs(a[k] - b[k]) for a, b in zip(straight, resumed) for k in keys)
    print(f"sd3-tiny LoRA r4, 3 iterations vs 2 + resume: {'identical' if straight == resumed else 'differ'}"
          f" (largest difference {worst:.3g} over {len(keys)} metrics)", flush=True)


class _Policy:
    """The digits UNet as a policy with a trainable module (all the layouts need)."""

    def __init__(self, device: str):
        from diffusers import UNet2DModel

        torch.manual_seed(0)
        self.net = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 64),
                               norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                               up_block_types=("AttnUpBlock2D", "UpBlock2D")).to(device)

    def trainable_module(self):
        return self.net


def _train(kind, device: str, steps: int):
    policy = _Policy(device)
    shards = kind(policy, lambda: torch.optim.AdamW(policy.net.parameters(), lr=1e-3), World())
    generator = torch.Generator(device).manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 1, 8, 8, device=device, generator=generator)
        t = torch.randint(0, 1000, (16,), device=device, generator=generator)
        loss = (policy.net(x, t).sample - x).square().mean()
        loss.backward()
        shards.optimizer.step()
        shards.optimizer.zero_grad()
    return policy, shards


def _full(net) -> dict[str, torch.Tensor]:
    return {k: full_tensor(v).detach().cpu() for k, v in net.state_dict().items()}


def check_layouts(device: str, scratch: Path) -> None:
    """DDP and FSDP2 in a process group of one; a checkpoint of each loads into the other."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dist.init_process_group("nccl" if device == "cuda" else "gloo", init_method=f"tcp://127.0.0.1:{port}",
                            rank=0, world_size=1)
    try:
        for writer, reader in ((Ddp, Fsdp2), (Fsdp2, Ddp)):
            policy, shards = _train(writer, device, 3)
            began = time.perf_counter()
            path = save_training_state(shards, scratch / writer.__name__, 3, {"iteration": 3}, keep=1)
            saved = time.perf_counter() - began
            fresh, loader = _train(reader, device, 0)
            began = time.perf_counter()
            state = load_training_state(loader, path)
            loaded = time.perf_counter() - began
            same = all(torch.equal(a, b) for a, b in zip(_full(policy.net).values(), _full(fresh.net).values()))
            steps = {float(s["step"]) for s in loader.optimizer.state_dict()["state"].values()}
            print(f"{writer.__name__} -> {reader.__name__} on {device}: weights {'equal' if same else 'DIFFER'}, "
                  f"AdamW steps {sorted(steps)}, iteration {state['iteration']}, "
                  f"save {saved:.3f} s, load {loaded:.3f} s", flush=True)
    finally:
        dist.destroy_process_group()


def check_large(device: str, scratch: Path) -> None:
    """Save and load time of the SD 1.5 UNet (860M parameters) with AdamW state, fp32."""
    from diffusers import UNet2DConditionModel

    net = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).to(device)

    class Policy:
        def trainable_module(self):
            return net

    shards = Layout(Policy(), lambda: torch.optim.AdamW(net.parameters(), lr=1e-5), World())
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    shards.optimizer.step()  # AdamW state exists
    began = time.perf_counter()
    path = save_training_state(shards, scratch / "large", 1, {"iteration": 1}, keep=1)
    saved = time.perf_counter() - began
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    began = time.perf_counter()
    load_training_state(shards, path)
    loaded = time.perf_counter() - began
    params = sum(p.numel() for p in net.parameters())
    print(f"SD 1.5 UNet {params / 1e6:.0f}M parameters + AdamW on {device}: {size / 1e9:.2f} GB, "
          f"save {saved:.1f} s, load {loaded:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("checkpoint_check: CUDA is not available here")
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}",
          flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        check_exact_resume(args.device, Path(scratch))
        check_layouts(args.device, Path(scratch))
        if not args.skip_large:
            check_large(args.device, Path(scratch))


if __name__ == "__main__":
    main()
