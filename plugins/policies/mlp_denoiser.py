"""Policy ``mlp-denoiser``: a small MLP epsilon (or v, x0) predictor on points of R^d, with a DDPM
forward process, for the exactly solvable benchmark (``configs/solvable-gmm.toml``).

Its samples are points, not pixels: ``decode`` and ``encode`` are the identity, and the
protocol's "pixels in [0, 1]" does not apply (its contract suite runs with
``PolicyContract.decodes_to_unit_range = False``). Rewards and metrics read the points as they are.

The network: ``x`` ``[B, d]`` and sinusoidal features of ``t / T`` (``time_features`` frequencies,
as in the DDPM / Transformer embeddings) go through ``layers`` hidden layers of ``hidden`` units
with SiLU, to an output ``[B, d]``. The forward process is ``DdpmProcess`` with the betas of
diffusers' ``DDPMScheduler`` (cosine ``squaredcos_cap_v2`` by default), so ``ddim-sde`` samples
it and ``ddrl pretrain`` trains it with the usual "simple" loss. Unconditional. diffusers is
imported when a policy is built, not when the plugin registers.

``architecture = "affine"`` replaces the MLP by one affine map per coordinate and training
timestep (:class:`AffineNet`), so that every ``ddim-sde`` step mean is affine in ``x``: the
linear-Gaussian twin of the benchmark, whose fixed points are known in closed form
(``ddrl_framework.evaluation.fixed_points``). With ``source_std`` it starts as the exact
denoiser of ``N(source_mean, source_std^2 I)`` data, with no pretraining.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

import attrs
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.forward_process import DdpmProcess, ForwardProcessDelegation, gaussian_denoiser
from ddrl_framework.kit.module_weights import ModuleWeights
from ddrl_framework.types import DataBatch

CONFIG_FILE, WEIGHTS_FILE = "mlp_denoiser.json", "mlp_denoiser.safetensors"


@hookimpl
def register_policies(register):
    register("mlp-denoiser", build_mlp_denoiser, forward_process="ddpm")


@attrs.frozen(kw_only=True)
class MlpConfig:
    """The architecture and forward process (what ``save_pretrained`` writes beside the weights)."""

    dim: int = attrs.field(default=2, validator=attrs.validators.ge(1))  # d: points of R^d
    hidden: int = attrs.field(default=128, validator=attrs.validators.ge(1))
    layers: int = attrs.field(default=3, validator=attrs.validators.ge(1))  # hidden layers
    time_features: int = attrs.field(default=16, validator=attrs.validators.ge(1))  # sin/cos pairs
    num_train_timesteps: int = attrs.field(default=1000, validator=attrs.validators.ge(2))  # T
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    architecture: Literal["mlp", "affine"] = "mlp"  # "affine": AffineNet, the linear-Gaussian twin


class AffineNet(nn.Module):
    """``(x [B, d], t [B]) -> weight[t] * x + bias[t]``: an affine map per coordinate and training
    timestep (``weight``, ``bias``: ``[T, d]``), zero until set."""

    def __init__(self, config: MlpConfig):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(config.num_train_timesteps, config.dim))
        self.bias = nn.Parameter(torch.zeros(config.num_train_timesteps, config.dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.long()
        return (self.weight[t] * x.float() + self.bias[t]).to(x.dtype)

    @torch.no_grad()
    def set_exact(self, alphas_cumprod: Tensor, prediction_type: str, mean: float, std: float) -> None:
        """The exact denoiser of ``N(mean, std^2 I)`` data (``kit.forward_process.gaussian_denoiser``),
        in the output this net's prediction type names (v from x0 and epsilon, as diffusers defines it)."""
        a = alphas_cumprod.double()[:, None]
        x0, eps = gaussian_denoiser(a, mean, std ** 2)
        output = {"sample": x0, "epsilon": eps,
                  "v_prediction": tuple(a.sqrt() * e - (1 - a).sqrt() * x for e, x in zip(eps, x0))}[prediction_type]
        self.weight.copy_(output[0].expand_as(self.weight))
        self.bias.copy_(output[1].expand_as(self.bias))


def make_net(config: MlpConfig) -> nn.Module:
    """The network ``config.architecture`` names."""
    return AffineNet(config) if config.architecture == "affine" else MlpNet(config)


class MlpNet(nn.Module):
    """``(x [B, d], t [B]) -> [B, d]``: an MLP on ``x`` and ``sin``, ``cos`` of ``f_j t / T`` for
    frequencies ``f_j`` spaced geometrically from 1 to 1000."""

    def __init__(self, config: MlpConfig):
        super().__init__()
        self.num_train_timesteps = config.num_train_timesteps
        frequencies = torch.logspace(0, 3, config.time_features)  # 1 to 1000 radians per unit of t / T
        self.register_buffer("frequencies", frequencies, persistent=False)
        width, blocks = config.dim + 2 * config.time_features, []
        for _ in range(config.layers):
            blocks += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        self.body = nn.Sequential(*blocks, nn.Linear(width, config.dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        phase = (t.float() / self.num_train_timesteps)[:, None] * self.frequencies  # [B, F]
        return self.body(torch.cat([x.float(), phase.sin(), phase.cos()], dim=1)).to(x.dtype)


def _alphas_cumprod(config: MlpConfig) -> Tensor:
    """``alpha_bar_t`` ``[T]`` of diffusers' ``DDPMScheduler`` (imported here, when a policy is
    built, so that registering the plugin stays light)."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule)
    return scheduler.alphas_cumprod.float()


class MlpPolicy(ForwardProcessDelegation, ModuleWeights):
    """Owns an :class:`MlpNet` and its ``DdpmProcess``; ``sample_shape = (d,)``."""

    def __init__(self, net: MlpNet, config: MlpConfig, frozen: bool = False,
                 reference_names: tuple[str, ...] | None = None):
        self.net, self.config = net, config
        self.forward_process = DdpmProcess(alphas_cumprod=_alphas_cumprod(config),
                                           prediction_type=config.prediction_type)
        self.sample_shape = (config.dim,)
        self._reference: MlpPolicy | None = None
        self._reference_names = reference_names  # on the reference view: the policy's trainable names
        if frozen:
            net.requires_grad_(False)

    # --- conditions and the network -------------------------------------------------
    def encode_conditions(self, batch: DataBatch) -> None:
        """Unconditional: prompts are ignored."""
        return None

    def predict(self, x_t: Tensor, t: Tensor, cond: None) -> Tensor:
        return self.net(x_t, t.to(x_t.device).expand(x_t.shape[0]))

    # --- points, not pixels -----------------------------------------------------------
    def decode(self, latents: Tensor) -> Tensor:
        """The identity: the samples are the points themselves (no [0, 1] range)."""
        return latents

    def encode(self, pixels: Tensor) -> Tensor:
        """The identity (see :meth:`decode`)."""
        return pixels

    # --- parameters, reference, persistence ------------------------------------------
    def trainable_module(self) -> nn.Module:
        return self.net

    def _weights(self) -> nn.Module:
        return self.net

    def reference(self) -> MlpPolicy:
        """A frozen copy of the weights as they were at the first call."""
        if self._reference is None:
            names = tuple(name for name, _ in self.named_trainable_parameters())
            self._reference = MlpPolicy(copy.deepcopy(self.net).eval(), self.config, frozen=True,
                                        reference_names=names)
        return self._reference

    def save_pretrained(self, directory: str | Path) -> None:
        """``mlp_denoiser.json`` (the :class:`MlpConfig`) and ``mlp_denoiser.safetensors``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(attrs.asdict(self.config), indent=2))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()},
                  directory / WEIGHTS_FILE)

    def to(self, device: torch.device | str) -> MlpPolicy:
        self.net.to(device)
        return self


def _load_pretrained(source: str) -> MlpPolicy:
    folder = Path(source)
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise ValueError(f"mlp-denoiser: '{source}' has no {CONFIG_FILE} and {WEIGHTS_FILE}; expected "
                         "a folder written by save_pretrained (or ddrl pretrain)")
    config = MlpConfig(**json.loads((folder / CONFIG_FILE).read_text()))
    net = make_net(config)
    net.load_state_dict(load_file(folder / WEIGHTS_FILE))
    return MlpPolicy(net, config)


def build_mlp_denoiser(
    *,
    pretrained: str | None = None,  # a folder written by save_pretrained / ddrl pretrain; overrides the rest
    dim: int = 2,  # d: the points' dimension
    hidden: int = 128,  # units per hidden layer
    layers: int = 3,  # hidden layers
    time_features: int = 16,  # sin/cos frequency pairs of the time embedding
    num_train_timesteps: int = 1000,  # T
    beta_schedule: Literal["squaredcos_cap_v2", "linear", "scaled_linear"] = "squaredcos_cap_v2",
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
    seed: int = 0,  # initial weights
    architecture: Literal["mlp", "affine"] = "mlp",  # "affine": one affine map per coordinate and timestep
    source_mean: float = 0.0,  # with source_std (affine only): start as the exact denoiser of
    source_std: float | None = None,  # N(source_mean, source_std^2 I) data
) -> MlpPolicy:
    if pretrained is not None:
        return _load_pretrained(pretrained)
    if source_std is not None and architecture != "affine":
        raise ValueError("mlp-denoiser: source_std sets the exact Gaussian denoiser, which only "
                         "architecture = \"affine\" can hold")
    config = MlpConfig(dim=dim, hidden=hidden, layers=layers, time_features=time_features,
                       num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                       prediction_type=prediction_type, architecture=architecture)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_net(config)
    policy = MlpPolicy(net, config)
    if source_std is not None:
        net.set_exact(policy.forward_process.alphas_cumprod, prediction_type, source_mean, source_std)
    return policy
