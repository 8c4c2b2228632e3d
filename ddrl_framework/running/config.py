"""Experiment files: TOML structured by cattrs into frozen attrs classes.

Every component section holds the registry ``name`` of a plugin plus that plugin's options::

    [sampler]
    name = "ddim-sde"   # the plugin
    denoising_steps = 10   # its options

An optional ``[compare]`` table (:class:`CompareConfig`) names the arms of a comparison; the one
loader (:mod:`ddrl_framework.running.loader`) builds the experiment of any arm from it.

Each value's range is declared on its field (``bounded``, or a validator of its own), so a bad
value is refused while the file is structured, with its key path.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

from ddrl_framework.errors import UserError
from ddrl_framework.options import CONVERTER, OutOfRange, bounded, error_paths
from ddrl_framework.roles import BETA_OPTION, ROLES


@attrs.frozen(kw_only=True)
class Component:
    """A plugin by registry name, with its options (every other key of the section)."""

    name: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RewardSpec:
    """One reward model and its weight in the summed reward."""

    name: str
    weight: float = attrs.field(default=1.0, validator=bounded())
    options: Mapping[str, Any] = attrs.field(factory=dict)


def _ranged(default: float, **bounds: float) -> Any:
    """A field whose value must be a finite number within ``bounds`` (see ``options.bounded``)."""
    return attrs.field(default=default, validator=bounded(**bounds))


def _some_seeds(_: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value:
        raise OutOfRange(attribute.name, "must list at least one seed, e.g. [0, 1, 2] (3 paired seeds "
                         "are the fewest that can conclude)")


def _step_indices(_: Any, attribute: attrs.Attribute, value: tuple[int, ...] | None) -> None:
    """None, or distinct indices >= 0 (the upper bound is the sampler's, checked before any work)."""
    if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
        raise OutOfRange(attribute.name, f"must be distinct sampler step indices >= 0, got {list(value)}; "
                         "leave it out for the sampler's default")


@attrs.frozen(kw_only=True)
class PretrainConfig:
    """Plain diffusion-loss training on the data source, giving the reference to fine-tune."""

    optimizer_steps: int = _ranged(0, at_least=0)  # 0: fine-tune the policy as its plugin builds it
    batch_size: int = _ranged(128, at_least=1)  # data samples per step
    learning_rate: float = _ranged(1e-3, above=0)  # AdamW, cosine-decayed to 0
    seed: int = 0  # initial weights, data order and noise
    # [pretrain.data]: the data source to pretrain on, when it is not [data] (e.g. a reference
    # that never saw some classes, while RL's data regularizer reads [data])
    data: Component | None = None


@attrs.frozen(kw_only=True)
class TrainConfig:
    """The RL loop (GRPO-style clipped policy gradient + the regularizer)."""

    iterations: int = _ranged(100, at_least=0)  # RL iterations (one rollout batch each)
    groups: int = _ranged(8, at_least=1)  # prompts (groups) per iteration
    # rollouts per prompt; advantages are normalized within a group
    group_size: int = _ranged(8, at_least=2)  # 1: every group-relative advantage is 0
    learning_rate: float = _ranged(1e-4, above=0)  # AdamW (the peak, under a schedule)
    # the learning rate over the run: "constant", or "cosine", decayed to 0 at train.iterations;
    # either after lr_warmup_iterations of linear warm-up (running.schedule)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    lr_warmup_iterations: int = _ranged(0, at_least=0)
    weight_decay: float = _ranged(0.0, at_least=0)  # AdamW
    max_grad_norm: float = _ranged(1.0, at_least=0)  # gradient clipping (0: off)
    clip_range: float = _ranged(0.2, above=0)  # PPO ratio clip eps
    advantage_normalization: Literal["group-std", "raw"] = "group-std"
    advantage_clip: float = _ranged(5.0, above=0)  # |A| <= this after normalization
    # neg-exp: A <- -exp(-A) after normalization; exp-tilt: A = -exp(-(r - Z) / T) from raw rewards
    # (the DDRL paper's form); either way then clipped to advantage_clip (the official order)
    advantage_transform: Literal["none", "neg-exp", "exp-tilt"] = "none"
    # T of exp-tilt (the paper's beta; then regularizer beta = 1)
    advantage_temperature: float = _ranged(1.0, above=0)
    # exp-tilt's Z = T log E exp(r / T): "reference" = over the reference's own samples, estimated
    # once before training (the paper's constant); "data" = over the held-out data; "group" = each
    # group's own (the target then sharpens as the policy improves)
    exp_tilt_normalizer: Literal["reference", "data", "group"] = "reference"
    exp_tilt_samples: int = _ranged(256, at_least=1)  # reference samples Z is estimated from
    # several [[rewards]]: "sum" = advantages of the weighted sum; "advantages" = each reward's own
    # group advantages, then their weighted sum (a reward with a large scale cannot drown the others)
    reward_aggregation: Literal["sum", "advantages"] = "sum"
    # sampler steps trained on (None: the sampler's default)
    trained_denoising_steps: tuple[int, ...] | None = attrs.field(default=None, validator=_step_indices)
    inner_epochs: int = _ranged(1, at_least=1)  # passes over each rollout batch
    # optimizer step every N trained steps (0: once per pass)
    denoising_steps_per_update: int = _ranged(0, at_least=0)
    checkpoint_every: int = _ranged(50, at_least=0)  # iterations between checkpoints (0: only at the end)
    keep_checkpoints: int = _ranged(2, at_least=1)  # older checkpoints are deleted
    grid_samples: int = _ranged(64, at_least=0)  # samples in the PNG grids, from fixed noise
    # iterations between evaluations with [[metrics]] (0: start and end only)
    eval_every: int = _ranged(10, at_least=0)
    eval_samples: int = _ranged(256, at_least=1)  # samples per evaluation, from fixed noise
    # samples of each held-out prompt per evaluation, in a row (>= 2: per-prompt diversity metrics)
    eval_samples_per_prompt: int = _ranged(1, at_least=1)
    eval_seed: int = 1000  # the evaluation noise, shared by every seed and arm
    # samples per rollout in evaluations and grids (0: all at once)
    eval_batch_size: int = _ranged(0, at_least=0)
    # a NaN / inf reward, advantage, loss or gradient: "stop" the run (nothing corrupt is saved),
    # or "skip" the rest of that iteration's update (counted as skipped_update in metrics.jsonl)
    on_nonfinite: Literal["stop", "skip"] = "stop"
    # under torchrun: "ddp" = every rank holds the weights, gradients all-reduced by DDP;
    # "fsdp2" = the policy's trainable module sharded with fully_shard (models too big for one device)
    sharding: Literal["ddp", "fsdp2"] = "ddp"
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...


@attrs.frozen(kw_only=True)
class Experiment:
    seed: int = 0  # rollout noise and data order
    output_dir: str  # metrics.jsonl, checkpoints/, PNGs
    policy: Component
    sampler: Component
    rewards: tuple[RewardSpec, ...]
    regularizer: Component = Component(name="none")
    data: Component
    # [eval_data]: the held-out data the evaluation compares with, when it is not [data]'s (e.g.
    # real digits while the data regularizer reads the reference's own samples)
    eval_data: Component | None = None
    metrics: tuple[Component, ...] = ()  # [[metrics]]: evaluation metrics, written to eval.jsonl
    loggers: tuple[Component, ...] = ()  # [[loggers]]: e.g. tensorboard, wandb (the JSONL files always)
    pretrain: PretrainConfig = PretrainConfig()
    train: TrainConfig = TrainConfig()

    @property
    def regularizer_beta(self) -> float | None:
        return self.regularizer.options.get(BETA_OPTION)


@attrs.frozen(kw_only=True)
class ResolvedExperiment(Experiment):
    """An experiment checked against the registry before any work (``running.validation``): the
    same values, and which plugin and distribution provide each component, by config key
    (``{"policy": {"name", "plugin", "distribution", "version"}, "rewards": [...], ...}``). The
    run's ``config.json`` records them; they are not config, so a resume does not compare them."""

    provenance: Mapping[str, Any] = attrs.field(factory=dict)


def _no_beta_beside_betas(arm: Arm, attribute, betas: tuple[float, ...]) -> None:
    if betas and BETA_OPTION in arm.regularizer:
        raise ValueError(f"arm '{arm.name}' sets both regularizer.beta = {arm.regularizer[BETA_OPTION]} and "
                         f"betas = {list(betas)}; each beta of betas replaces regularizer.beta, so keep one")


@attrs.frozen(kw_only=True)
class Arm:
    """One setting of a comparison: a regularizer table, optionally swept over betas."""

    name: str  # how the arm is labelled in the report and its runs' folders
    regularizer: dict[str, Any]  # the [regularizer] table (without beta when betas are swept)
    # a sweep; empty: the regularizer table as it is (a beta in both is refused)
    betas: tuple[float, ...] = attrs.field(default=(), validator=_no_beta_beside_betas)
    set: tuple[str, ...] = ()  # KEY=VALUE overrides for this arm's runs
    own_target: str | None = None  # the eval key of the FD to this arm's own optimum
    # added to every seed of this arm's runs (still paired by the listed seed): a twin arm that
    # differs only in its noise, for the negative control
    seed_offset: int = 0


@attrs.frozen(kw_only=True)
class Target:
    """A reweighting of the held-out data that an objective is optimal at."""

    name: str
    weighting: Literal["none", "exp-tilt", "forward-kl"] = "none"
    temperature: float = _ranged(1.0, above=0)


@attrs.frozen(kw_only=True)
class CompareMetric:
    """How the report judges one eval metric: its good direction and its equivalence margin."""

    key: str  # the eval key, e.g. "fd" or "reward_mean"
    better: Literal["higher", "lower"] | None = None  # None: the built-in direction of a known key
    # the smallest difference worth a verdict, in the key's unit; None: the built-in default
    # (comparison/metric_keys.py), and a key with none cannot be a primary comparison
    margin: float | None = attrs.field(default=None, validator=bounded(at_least=0))


@attrs.frozen(kw_only=True)
class PrimaryComparison:
    """One declared primary comparison: a metric, a pair of settings and a view. The primary
    comparisons form the family whose verdicts are corrected for multiplicity (Holm); every
    other row of the report is an estimate with no verdict."""

    metric: str  # an eval key, judged as [compare].metrics says (or by its built-in direction)
    pair: tuple[str, str]  # two settings, each "arm" or "arm@beta"
    view: Literal["matched reward", "equal budget"] = "matched reward"


DEFAULT_ARMS = (
    Arm(name="none", regularizer={"name": "none"}),
    Arm(name="reverse-kl", regularizer={"name": "reverse-kl"}),
    Arm(name="forward-kl-data", regularizer={"name": "forward-kl-data"}),
)


@attrs.frozen(kw_only=True)
class CompareConfig:
    """The ``[compare]`` table: every arm x beta x seed runs under the same base experiment."""

    seeds: tuple[int, ...] = attrs.field(default=(0,), validator=_some_seeds)
    arms: tuple[Arm, ...] = DEFAULT_ARMS
    targets: tuple[Target, ...] = (Target(name="data"),)
    common_target: str | None = None  # the eval key of the FD to the common target
    evaluation_repeats: int = _ranged(5, at_least=0)  # evaluations of the reference with fresh noise: the spread
    jobs: int = _ranged(1, at_least=1)  # runs side by side (each in its own process, on cores / jobs threads)
    confidence: float = _ranged(0.95, above=0.5, at_most=0.999)  # of the paired-seed intervals
    metrics: tuple[CompareMetric, ...] = ()  # what the verdicts judge; empty: every known key evaluated
    pairs: tuple[tuple[str, str], ...] = ()  # settings ("arm" or "arm@beta") compared; empty: across arms
    matched_reward: tuple[float, ...] = ()  # reward levels to compare at; empty: the highest all reach
    budget: Literal["iterations", "seconds", "passes"] = "iterations"  # the equal-budget view's axis
    # the family of verdicts, Holm-corrected; empty: every judged row is in the family
    primary: tuple[PrimaryComparison, ...] = ()


def _split_name(section: Any, keep: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(section, Mapping):
        raise TypeError(f"expected a table with a 'name' key, got {type(section).__name__}")
    if "name" not in section:
        raise ValueError("missing 'name': the registry name of a plugin (see `ddrl plugins`)")
    own = {k: section[k] for k in ("name", *keep) if k in section}
    return own, {k: v for k, v in section.items() if k not in own}


def _structure_component(section: Any, _: type) -> Component:
    own, options = _split_name(section)
    return Component(name=CONVERTER.structure(own["name"], str), options=options)


def _structure_reward(section: Any, _: type) -> RewardSpec:
    own, options = _split_name(section, keep=("weight",))
    weight = CONVERTER.structure(own.get("weight", 1.0), float)
    return RewardSpec(name=CONVERTER.structure(own["name"], str), weight=weight, options=options)


CONVERTER.register_structure_hook(Component, _structure_component)
CONVERTER.register_structure_hook(RewardSpec, _structure_reward)


def to_dict(experiment: Experiment) -> dict[str, Any]:
    """The experiment as plain TOML-like data (components flattened back to name + options)."""

    def flat(c: Component | RewardSpec) -> dict[str, Any]:
        out = {"name": c.name, **c.options}
        if isinstance(c, RewardSpec):
            out["weight"] = c.weight
        return out

    data = {f.name: getattr(experiment, f.name) for f in attrs.fields(Experiment)}
    for role in ROLES.values():
        value = data[role.config_key]
        data[role.config_key] = [flat(c) for c in value] if role.many else flat(value)
    if experiment.eval_data is None:
        del data["eval_data"]
    else:
        data["eval_data"] = flat(experiment.eval_data)
    data["pretrain"] = attrs.asdict(experiment.pretrain, filter=lambda field, _: field.name != "data")
    if experiment.pretrain.data is not None:
        data["pretrain"]["data"] = flat(experiment.pretrain.data)
    data["train"] = attrs.asdict(experiment.train)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.iterations=5"`` -> (["train", "iterations"], 5). Values are TOML, else strings."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.iterations=5")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {'.'.join(path)}: no item {part} in '{'.'.join(path[:i])}'")
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(node, list):
        if not last.isdigit() or int(last) >= len(node):
            raise UserError(f"--set {'.'.join(path)}: no item {last} in that list")
        node[int(last)] = value
    else:
        node[last] = value


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not a text file (byte {error.start} is not UTF-8): an experiment is a "
                        "TOML file (docs/configuration.md)") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML: {error}") from None


def structure(data: Mapping[str, Any], cls: type, source: str, prefix: str = "") -> Any:
    """``data`` as ``cls``; problems become a UserError naming ``source`` and each key path."""
    try:
        return CONVERTER.structure(dict(data), cls)
    except (cattrs.BaseValidationError, OutOfRange) as error:
        lines = [f"{message} at key {path}" if path else f"{message} at the top level"
                 for message, path in error_paths(error, prefix.rstrip("."))]
        raise UserError(f"{source}: invalid config:\n" + "\n".join(f"  {line}" for line in lines)) from None


# keys renamed in 0.2 so that each "steps" says what it counts
RENAMED_KEYS = {
    ("pretrain", "steps"): "optimizer_steps",
    ("train", "trained_steps"): "trained_denoising_steps",
    ("train", "steps_per_update"): "denoising_steps_per_update",
}


def check_renamed_keys(data: Mapping[str, Any], source: str) -> None:
    """A key renamed in 0.2 is an error naming its new name (rather than an unknown key)."""
    for (section, old), new in RENAMED_KEYS.items():
        if isinstance(data.get(section), Mapping) and old in data[section]:
            raise UserError(f"{source}: {section}.{old} was renamed {section}.{new}; rename the key")


def structure_experiment(data: Mapping[str, Any], source: str) -> Experiment:
    """The experiment of ``data`` (without a ``[compare]`` table); a renamed key is refused first."""
    check_renamed_keys(data, source)
    return structure(data, Experiment, source)
