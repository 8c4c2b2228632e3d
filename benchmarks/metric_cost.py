"""What each evaluation metric costs per evaluation, beside the evaluation's own rollout, on the
tiny configs (CPU): median seconds over `--rounds`, the metrics timed in turn on one evaluation's
samples (the same EvalContext a run builds).

    .venv/bin/python benchmarks/metric_cost.py [--configs configs/sd-tiny.toml ...] [--rounds 5]

The rollout row is the evaluation's sampling and decoding (`train.eval_samples` samples); each
metric row is its call alone (a model it loads is loaded in the warm-up round, as in a run,
where it loads once). On real backbones the open_clip metrics scale with the feature model
(ViT-L-14 instead of the 16-d tiny one) and the held-out reward with its reward model.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ddrl_framework.contexts import EvalContext
from ddrl_framework.evaluation.scoring import score
from ddrl_framework.kit.chain import sample_in_chunks
from ddrl_framework.kit.seeding import make_generator
from ddrl_framework.registry import load_registry
from ddrl_framework.running.components import build_components, make_evaluator
from ddrl_framework.running.loader import load_experiment

CONFIGS = ["configs/sd-tiny.toml", "configs/sd3-tiny.toml", "configs/wan-tiny.toml"]


def evaluation(config: str, folder: str):
    """The evaluator of ``config`` and a function making one evaluation's context."""
    experiment = load_experiment(config, [f"output_dir={folder}"])
    parts = build_components(experiment, load_registry(), torch.device("cpu"), show_progress=False)
    reference = parts.policy.reference() if parts.needs_reference else None
    evaluator = make_evaluator(parts, reference, experiment.train, torch.device("cpu"))

    def rollout() -> EvalContext:
        policy = evaluator.policy
        generator = make_generator(evaluator.device, evaluator.seed + 1)
        trajectory, samples = sample_in_chunks(evaluator.sampler, policy, evaluator.conditions, evaluator.noise,
                                               generator, evaluator.chunk)
        rewards, _ = score(evaluator.rewards, samples, evaluator.conditions.prompts, {})
        return EvalContext(policy=policy, reference=reference, sampler=evaluator.sampler, trajectory=trajectory,
                           cond=policy.encode_conditions(evaluator.conditions), samples=samples,
                           prompts=evaluator.conditions.prompts, rewards=rewards, score=evaluator.score_pixels,
                           held_out=evaluator.held_out)

    return evaluator, rollout, experiment


def seconds(job, rounds: int) -> float:
    job()  # warm-up: models load, caches fill
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        job()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.rounds} rounds\n")
    print("| config | samples | component | s per evaluation | ratio to rollout |")
    print("|---|---|---|---|---|")
    for config in args.configs:
        with tempfile.TemporaryDirectory() as folder:
            evaluator, rollout, experiment = evaluation(config, folder)
            with torch.no_grad():
                base = seconds(rollout, args.rounds)
                context = rollout()
                shape = "x".join(map(str, context.samples.shape[1:]))
                print(f"| {config} | {evaluator.count} of {shape} | evaluation rollout | {base:.3f} | 1.00 |")
                for (name, metric), spec in zip(evaluator.metrics, experiment.metrics):
                    label = name + (f" ({spec.options['reward']['name']})" if "reward" in spec.options else "")
                    cost = seconds(lambda: metric(context), args.rounds)
                    print(f"| {config} | {evaluator.count} | {label} | {cost:.4f} | {cost / base:.3f} |")


if __name__ == "__main__":
    main()
