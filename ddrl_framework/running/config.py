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
from ddrl_framework.options import CONVERTER, OutOfRange, bounded, error_paths, key_error
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


def _ranged(default: float, metadata: Mapping[str, str] | None = None, **bounds: float) -> Any:
    """A field whose value must be a finite number within ``bounds`` (see ``options.bounded``)."""
    return attrs.field(default=default, validator=bounded(**bounds), metadata=metadata)


def _doc(doc: str, default: str | None = None) -> dict[str, str]:
    """A field's metadata: its description (and its default in words, where the value does not
    say it) for the configuration reference, which ``running.config_docs`` generates."""
    return {"doc": doc} if default is None else {"doc": doc, "default": default}


def _some_seeds(_: Any, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value:
        raise OutOfRange(attribute.name, "must list at least one seed, e.g. [0, 1, 2] (3 paired seeds "
                         "are the fewest that can conclude)")


def _some_rewards(_: Any, attribute: attrs.Attribute, value: tuple[Any, ...]) -> None:
    if not value:
        raise OutOfRange(attribute.name, 'must list at least one reward: add a [[rewards]] table, e.g. '
                         '[[rewards]] name = "brightness"')


def _step_indices(_: Any, attribute: attrs.Attribute, value: tuple[int, ...] | None) -> None:
    """None, or distinct indices >= 0 (the upper bound is the sampler's, checked before any work)."""
    if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
        raise OutOfRange(attribute.name, f"must be distinct sampler step indices >= 0, got {list(value)}; "
                         "leave it out for the sampler's default")


@attrs.frozen(kw_only=True)
class PretrainConfig:
    """Plain diffusion-loss training on the data source, giving the reference to fine-tune."""

    optimizer_steps: int = _ranged(0, at_least=0, metadata=_doc(
        "optimizer steps of pretraining; 0: fine-tune the policy as its plugin builds it"))
    batch_size: int = _ranged(128, at_least=1, metadata=_doc(
        "data samples per step"))
    learning_rate: float = _ranged(1e-3, above=0, metadata=_doc(
        "AdamW, cosine-decayed to 0"))
    seed: int = attrs.field(default=0, metadata=_doc(
        "data order and noise"))
    data: Component | None = attrs.field(default=None, metadata=_doc(
        "`[pretrain.data]`: the data source to pretrain on, when it is not `[data]` (e.g. `{ name = "
        '"sklearn-digits", classes = [0, 1, 2, 4, 5, 6, 7, 8, 9] }` for a reference without 3s, while the'
        " RL data regularizer reads every digit from `[data]`); the cache key holds the data trained on, "
        "whichever table names it",
        default="`[data]`"))


@attrs.frozen(kw_only=True)
class TrainConfig:
    """The RL loop (GRPO-style clipped policy gradient + the regularizer)."""

    iterations: int = _ranged(100, at_least=0, metadata=_doc(
        "RL iterations; each draws one rollout batch"))
    groups: int = _ranged(8, at_least=1, metadata=_doc(
        "prompts per iteration (each paired with its data sample for `forward-kl-data`)"))
    group_size: int = _ranged(8, at_least=2, metadata=_doc(
        "rollouts per prompt; advantages are computed within a group"))
    learning_rate: float = _ranged(1e-4, above=0, metadata=_doc(
        "AdamW; the peak rate under a schedule"))
    lr_schedule: Literal["constant", "cosine"] = attrs.field(default="constant", metadata=_doc(
        '`"constant"`, or `"cosine"`: decayed from the peak to 0 at `iterations` (after the warm-up); a '
        "function of the iteration only, so a resumed run takes the same rates"))
    lr_warmup_iterations: int = _ranged(0, at_least=0, metadata=_doc(
        "linear warm-up over the first W iterations: iteration i runs at `(i + 1) / W` of the peak"))
    weight_decay: float = _ranged(0.0, at_least=0, metadata=_doc(
        "AdamW"))
    max_grad_norm: float = _ranged(1.0, at_least=0, metadata=_doc(
        "gradient-norm clipping (0: off). Each iteration logs `grad_clipped`, the fraction of its "
        "optimizer steps whose norm exceeded it, and a report warns about a setting clipped in most "
        "updates: a clipped run settles where `E[g / \\|g\\|] = 0`, not at its objective's fixed point "
        '(concepts, "What each estimator converges to")'))
    clip_range: float = _ranged(0.2, above=0, metadata=_doc(
        "PPO's ratio clip: `clip(ratio, 1 - eps, 1 + eps)`"))
    advantage_normalization: Literal["group-std", "raw"] = attrs.field(default="group-std", metadata=_doc(
        '`"group-std"`: `(r - mean) / (std + eps)` (GRPO); `"raw"`: `r_i` minus the mean of the other '
        "members of its group (leave-one-out: an unbiased gradient of `E[r]`), so beta keeps its meaning "
        "in the objective (until 2026-12-06 it centred on the group mean including the sample, which "
        "scales the reward's gradient by `(G - 1) / G`: a loss-side beta acted at `G / (G - 1)` of "
        "itself). With `\"group-std\"` the reward is divided by its group's std, so beta is relative to "
        "that std, which changes as training goes"))
    advantage_clip: float = _ranged(5.0, above=0, metadata=_doc(
        "advantages are clipped to `[-A_max, A_max]`, last (after a transform, as the official code does)"))
    advantage_transform: Literal["none", "neg-exp", "exp-tilt"] = attrs.field(default="none", metadata=_doc(
        "`\"neg-exp\"`: `A <- -exp(-A)` after normalization; `\"exp-tilt\"`: the DDRL paper's `A = -exp(-(r -"
        " Z) / T)` from raw rewards (normalization is then unused)"))
    advantage_temperature: float = _ranged(1.0, above=0, metadata=_doc(
        "`T` of `\"exp-tilt\"`: the paper's beta (then set the data regularizer's beta to 1, in nats)"))
    exp_tilt_normalizer: Literal["reference", "data", "group"] = attrs.field(
        default="reference", metadata=_doc(
        '`Z = T log E exp(r / T)` of `"exp-tilt"`: `"reference"`: over `exp_tilt_samples` samples of the '
        "reference, once before training (the paper's constant; logged as `exp_tilt_z`, kept in "
        "checkpoints); `\"data\"`: over the held-out data; `\"group\"`: each group's own (the target sharpens"
        " as the policy improves)"))
    exp_tilt_samples: int = _ranged(256, at_least=1, metadata=_doc(
        "reference samples `Z` is estimated from"))
    reward_aggregation: Literal["sum", "advantages"] = attrs.field(default="sum", metadata=_doc(
        'with several `[[rewards]]`: `"sum"`, advantages of the weighted sum; `"advantages"`, each '
        "reward's own group advantages, then their weighted sum (a reward on a large scale cannot drown "
        "the others)"))
    trained_denoising_steps: tuple[int, ...] | None = attrs.field(
        default=None, validator=_step_indices, metadata=_doc(
        "indices of the sampler's denoising steps trained on, e.g. `[0, 1, 2]`; unset: the sampler's "
        "`default_trained_steps` (the built-ins leave out steps whose gradient gain is over 10 times the "
        "median: on the digits chain the first and the last, see "
        "[concepts](concepts.md#which-steps-are-trained-and-the-clip))",
        default="the sampler's default"))
    inner_epochs: int = _ranged(1, at_least=1, metadata=_doc(
        "passes over each rollout batch"))
    denoising_steps_per_update: int = _ranged(0, at_least=0, metadata=_doc(
        "an optimizer step (an update) every N trained denoising steps; 0: one per pass (gradients "
        "accumulate over all trained steps, so every ratio is 1 on the first pass)"))
    checkpoint_every: int = _ranged(50, at_least=0, metadata=_doc(
        "iterations between checkpoints; one is always written at the end"))
    keep_checkpoints: int = _ranged(2, at_least=1, metadata=_doc(
        "older checkpoints are deleted"))
    grid_samples: int = _ranged(64, at_least=0, metadata=_doc(
        "samples in `samples_start.png` and `samples_final.png` (fixed noise); 0: none"))
    eval_every: int = _ranged(10, at_least=0, metadata=_doc(
        "iterations between evaluations (0: at the start and the end only); each writes one `eval.jsonl` "
        "line"))
    eval_samples: int = _ranged(256, at_least=1, metadata=_doc(
        "samples per evaluation"))
    eval_samples_per_prompt: int = _ranged(1, at_least=1, metadata=_doc(
        "samples of each held-out prompt per evaluation, in a row; at least 2 for per-prompt diversity "
        "(`clip-diversity`'s `clip_prompt_diversity`); make `eval_samples` a multiple of it"))
    eval_seed: int = attrs.field(default=1000, metadata=_doc(
        "the evaluation noise, the same for every seed and arm"))
    eval_batch_size: int = _ranged(0, at_least=0, metadata=_doc(
        "samples per rollout in evaluations and sample grids (0: all at once); set it for large backbones"))
    on_nonfinite: Literal["stop", "skip"] = attrs.field(default="stop", metadata=_doc(
        'a NaN / inf reward, log-prob, advantage, loss or gradient: `"stop"` the run before that update '
        '(exit code 3, message names the iteration and source, checkpoints intact), or `"skip"` the rest '
        "of that iteration's update (`skipped_update: 1` in `metrics.jsonl`)"))
    sharding: Literal["ddp", "fsdp2"] = attrs.field(default="ddp", metadata=_doc(
        'under `torchrun`: `"ddp"`, every rank holds the weights and DistributedDataParallel all-reduces '
        "the gradients; `\"fsdp2\"`, the policy's `trainable_module()` is sharded with `fully_shard` and "
        "checkpoints are written sharded (see [distributed](distributed.md)); one process ignores it; may"
        " change on `--resume`"))
    device: str = attrs.field(default="auto", metadata=_doc(
        '`"auto"` (CUDA when available), `"cpu"`, `"cuda"`, `"cuda:N"`'))


@attrs.frozen(kw_only=True)
class Experiment:
    seed: int = attrs.field(default=0, metadata=_doc(
        "rollout noise and data order; the same seed gives the same run"))
    output_dir: str = attrs.field(metadata=_doc(
        "where `config.json`, `metrics.jsonl`, `checkpoints/` and the PNGs go"))
    policy: Component = attrs.field(metadata=_doc(
        "`[policy]`: the backbone plugin and its options"))
    sampler: Component = attrs.field(metadata=_doc(
        "`[sampler]`: the sampler plugin and its options"))
    rewards: tuple[RewardSpec, ...] = attrs.field(validator=_some_rewards, metadata=_doc(
        "`[[rewards]]`, one table per reward: `name`, `weight` (default 1.0), options; the reward is the "
        "weighted sum"))
    regularizer: Component = attrs.field(default=Component(name="none"), metadata=_doc(
        "`[regularizer]`: the regularizer plugin and its options",
        default='`name = "none"`'))
    data: Component = attrs.field(metadata=_doc(
        "`[data]`: the data-source plugin and its options"))
    eval_data: Component | None = attrs.field(default=None, metadata=_doc(
        "`[eval_data]`: a data source whose held-out data the evaluation compares with instead of "
        "`[data]`'s (e.g. the real digits, while the data regularizer reads the reference's own samples "
        "from `[data]`)",
        default="`[data]`"))
    metrics: tuple[Component, ...] = attrs.field(default=(), metadata=_doc(
        "`[[metrics]]`, one table per evaluation metric: `name` and options"))
    loggers: tuple[Component, ...] = attrs.field(default=(), metadata=_doc(
        "`[[loggers]]`, one table per logger besides the JSONL files (always written): `name = "
        '"tensorboard"` or `"wandb"` and options; several at once'))
    pretrain: PretrainConfig = attrs.field(default=PretrainConfig(), metadata=_doc(
        "`[pretrain]`: how the reference model is made",
        default="see below"))
    train: TrainConfig = attrs.field(default=TrainConfig(), metadata=_doc(
        "`[train]`: the RL loop",
        default="see below"))

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

    name: str = attrs.field(metadata=_doc(
        "the arm's label (unique)"))
    regularizer: dict[str, Any] = attrs.field(metadata=_doc(
        'the `[regularizer]` table of its runs, e.g. `{ name = "forward-kl-data", noise = "fresh" }`'))
    betas: tuple[float, ...] = attrs.field(default=(), validator=_no_beta_beside_betas, metadata=_doc(
        "a sweep: one run per beta (and seed); empty: the table as it is (a `beta` in `regularizer` "
        "beside `betas` is refused)"))
    set: tuple[str, ...] = attrs.field(default=(), metadata=_doc(
        '`KEY=VALUE` overrides for this arm only, e.g. `["train.advantage_transform=exp-tilt"]`'))
    own_target: str | None = attrs.field(default=None, metadata=_doc(
        "the eval key of the FD to this arm's own optimum (e.g. `\"fd_forward_kl\"`)"))
    seed_offset: int = attrs.field(default=0, metadata=_doc(
        "added to every seed of this arm's runs, which stay paired by the listed seed: a twin arm that "
        "differs only in its noise (the negative control)"))


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
    better: Literal["higher", "lower"] | None = None  # None: the direction its metric declares
    # the smallest difference worth a verdict, in the key's unit; None: the default its metric
    # declares (ddrl_framework/metric_key.py), and a key with none cannot be a primary comparison
    margin: float | None = attrs.field(default=None, validator=bounded(at_least=0))


@attrs.frozen(kw_only=True)
class PrimaryComparison:
    """One declared primary comparison: a metric, a pair of settings and a view. The primary
    comparisons form the family whose verdicts are corrected for multiplicity (Holm); every
    other row of the report is an estimate with no verdict."""

    metric: str  # an eval key, judged as [compare].metrics says (or by its metric's declared direction)
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

    seeds: tuple[int, ...] = attrs.field(default=(0,), validator=_some_seeds, metadata=_doc(
        "every arm and beta runs once per seed"))
    arms: tuple[Arm, ...] = attrs.field(default=DEFAULT_ARMS, metadata=_doc(
        "`[[compare.arms]]` tables, below",
        default="`none`, `reverse-kl`, `forward-kl-data`"))
    targets: tuple[Target, ...] = attrs.field(default=(Target(name="data"),), metadata=_doc(
        "reweightings of the held-out data whose metrics the report lists as reference values: `name`, "
        '`weighting` ("none", "exp-tilt", "forward-kl"), `temperature`',
        default='`[{name = "data"}]`'))
    common_target: str | None = attrs.field(default=None, metadata=_doc(
        'the eval key of the FD to the target every arm is judged against (e.g. `"fd_exp_tilt"`)'))
    evaluation_repeats: int = _ranged(5, at_least=0, metadata=_doc(
        "evaluations of the reference on fresh noise: the spread of one evaluation (and the number of "
        "half splits of the out-of-sample floors, at least 2)"))
    jobs: int = _ranged(1, at_least=1, metadata=_doc(
        "runs side by side"))
    confidence: float = _ranged(0.95, above=0.5, at_most=0.999, metadata=_doc(
        "the level of every interval (paired t intervals over seeds; bands in the plots)"))
    metrics: tuple[CompareMetric, ...] = attrs.field(default=(), metadata=_doc(
        "`[{key, better, margin}]`: keys to judge beside the declared ones, or new facts for a declared "
        'key; `better` is `"higher"` or `"lower"` (needed for a key whose metric declares no direction); '
        "`margin` is the smallest difference worth a verdict, in the metric's own unit (default: the "
        "one its metric declares, \"Margins\" below; a key with none cannot be a primary comparison)",
        default="every evaluated key whose metric declares a direction"))
    pairs: tuple[tuple[str, str], ...] = attrs.field(default=(), metadata=_doc(
        '`[["A", "B"], ...]`: the settings compared, each `"arm"` or `"arm@beta"` (the arm\'s beta in a '
        "sweep)",
        default="every pair of settings of different arms"))
    matched_reward: tuple[float, ...] = attrs.field(default=(), metadata=_doc(
        "reward levels to compare each pair at, declared before the runs; needed for a primary comparison"
        " at matched reward",
        default="none: a level read off the runs (80% of the way from the highest start to the highest "
        "reward every run of both settings reaches), whose rows are exploratory"))
    budget: Literal["iterations", "seconds", "passes"] = attrs.field(default="iterations", metadata=_doc(
        "the equal-budget view: `\"iterations\"`, `\"seconds\"` (each run's median seconds per iteration "
        'times its iterations) or `"passes"` (network passes, counted)'))
    primary: tuple[PrimaryComparison, ...] = attrs.field(default=(), metadata=_doc(
        '`[[compare.primary]]` tables `{metric, pair = ["A", "B"], view}` (`view`: `"matched reward"` or '
        '`"equal budget"`): the family whose verdicts are Holm-corrected; every other row is an '
        'exploratory estimate ("Statistics" below)',
        default="every judged row but those at a level read off the runs"))


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
        raise UserError("\n".join(key_error(f"{source}: {path}" if path else source, message)
                                   for message, path in error_paths(error, prefix.rstrip(".")))) from None


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
