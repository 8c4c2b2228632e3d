"""The Regularizer contract suite.

It checks on a policy that *differs from its reference* (the reference is taken, then the
policy's trainable weights are perturbed), so a KL to the reference is not 0, and a loss that is
not 0 must have a gradient that is not 0: a ``.detach()``ed loss, a constant, or a loss built
from ``context.transition.mean.detach()`` fails. The step context carries only what the
regularizer declares (``needs_data``, ``needs_reference``, ``needs_reference_transition``), as
the trainer's does, so reading an undeclared field fails here rather than in a run. An optional
``update_loss(context)`` is checked the same way with an ``UpdateContext``, and an optional
``extra_states(context)`` must give, through the trainer's joined network call, the losses of
the separate calls (and gradients that are not 0 where they are not).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
import pytest
import torch
from torch import Tensor

from ddrl_framework.kit.role_outputs import check_regularizer_losses
from ddrl_framework.protocols import HasExtraStates, HasUpdateLoss, Policy, Regularizer, Sampler
from ddrl_framework.roles import loss_key
from ddrl_framework.testing.fakes import FakeBackbone, Needs, make_step_context, make_update_context, perturb
from ddrl_framework.testing.messages import brief, nonzero_count, protocol_message


@attrs.frozen(kw_only=True)
class RegularizerSetup:
    """A regularizer, a policy moved away from its (earlier) reference, and a sampler."""

    regularizer: Regularizer
    policy: Policy
    reference: Policy
    sampler: Sampler


def call_loss(method: Callable, context, regularizer: Regularizer, what: str) -> dict[str, Tensor]:
    """``method(context)``; an exception becomes a failure naming the fields left out."""
    try:
        return method(context)
    except Exception as error:  # noqa: BLE001 - any crash is a contract failure, with its reason
        raise AssertionError(
            f"{what} raised {type(error).__name__}: {error} -- on a context built from its declarations "
            f"({Needs.of(regularizer).describe()}): declare what {what} reads") from error


def check_named_scalars(losses, what: str, required: str | None = None) -> None:
    """A non-empty dict of ``loss_*`` keys to finite floating scalars; ``required`` among them."""
    assert isinstance(losses, dict) and losses, (
        f"{what} returned {brief(losses)}; expected a dict of loss_* scalars")
    keys = sorted(losses)
    if required is not None:
        assert required in losses, f"{what} returned keys {keys}; expected '{required}'"
    try:
        check_regularizer_losses(losses, what)  # as a run checks them
    except ValueError as error:
        raise AssertionError(str(error)) from None
    for key, value in losses.items():
        assert math.isfinite(float(value.detach())), (
            f"{what}['{key}'] = {float(value.detach())}; expected finite")


def check_gradients(losses: dict[str, Tensor], policy: Policy, what: str) -> None:
    """Each loss that is not 0 has a finite gradient that is not 0 on the policy's weights."""
    params = list(policy.trainable_parameters())
    for key, value in losses.items():
        if float(value.detach()) == 0:
            continue
        assert value.requires_grad, (
            f"{what}['{key}'] = {float(value.detach()):.4g} carries no gradient (requires_grad is False); "
            "expected one: is it .detach()ed, a constant, or built from detached tensors "
            "(e.g. context.transition.mean.detach())?")
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        reached, total = nonzero_count(grads)
        assert reached > 0, (f"{what}['{key}'] = {float(value.detach()):.4g} but its gradient is zero on all "
                             f"{total} trainable tensors of a policy that differs from its reference")
        finite = all(g is None or bool(torch.isfinite(g).all()) for g in grads)
        assert finite, f"{what}['{key}'] has a non-finite gradient"


class RegularizerContract(FakeBackbone):
    """Define ``make_regularizer()``; override ``make_policy()`` / ``make_sampler()`` if needed.

    ``perturbation``: the std of the noise added to the policy's trainable weights after its
    reference is taken; ``step``: the trained step the context is built for.
    """

    perturbation = 0.05
    step = 1

    def make_regularizer(self) -> Regularizer:
        raise NotImplementedError

    def make_setup(self) -> RegularizerSetup:
        policy = self.make_policy()
        reference = policy.reference()  # before the policy moves
        perturb(policy, self.perturbation)
        return RegularizerSetup(regularizer=self.make_regularizer(), policy=policy, reference=reference,
                                sampler=self.make_sampler())

    def make_context(self, setup: RegularizerSetup, fuse_extra: bool = False):
        """The step context of ``step``, carrying only what the regularizer declares (``fuse_extra``:
        with its ``extra_states`` computed in the step's network call, as the trainer does)."""
        return make_step_context(setup.policy, setup.sampler, step=self.step, reference=setup.reference,
                                 regularizer=setup.regularizer, fuse_extra=fuse_extra)

    def make_update_context(self, setup: RegularizerSetup):
        return make_update_context(setup.policy, setup.sampler, reference=setup.reference,
                                   regularizer=setup.regularizer)

    @pytest.fixture
    def setup(self) -> RegularizerSetup:
        return self.make_setup()

    @pytest.fixture
    def context(self, setup):
        """The step context of ``setup``, for a subclass's own checks."""
        return self.make_context(setup)

    def _losses(self, setup: RegularizerSetup) -> dict[str, Tensor]:
        regularizer = setup.regularizer
        return call_loss(regularizer.loss, self.make_context(setup), regularizer, "loss()")

    def test_implements_protocol(self, setup):
        regularizer = setup.regularizer
        assert isinstance(regularizer, Regularizer), protocol_message(regularizer, Regularizer)
        assert isinstance(regularizer.name, str) and regularizer.name, (
            f"name is {regularizer.name!r}; expected a str")
        for flag in ("needs_reference", "needs_reference_transition", "needs_data"):
            value = getattr(regularizer, flag)
            assert isinstance(value, bool), f"{flag} is {value!r} ({type(value).__name__}); expected a bool"

    def test_returns_its_named_finite_scalar(self, setup):
        name = setup.regularizer.name
        check_named_scalars(self._losses(setup), "loss()", required=loss_key(name))

    def test_gradients_are_not_zero_where_the_loss_is_not(self, setup):
        check_gradients(self._losses(setup), setup.policy, "loss()")

    def test_update_loss_is_named_finite_and_differentiable(self, setup):
        regularizer = setup.regularizer
        if not isinstance(regularizer, HasUpdateLoss):
            pytest.skip("the regularizer has no update_loss()")
        context = self.make_update_context(setup)
        losses = call_loss(regularizer.update_loss, context, regularizer, "update_loss()")
        check_named_scalars(losses, "update_loss()")
        check_gradients(losses, setup.policy, "update_loss()")

    def test_extra_states_give_the_losses_of_separate_calls(self, setup):
        regularizer = setup.regularizer
        if not isinstance(regularizer, HasExtraStates):
            pytest.skip("the regularizer has no extra_states()")
        fused = call_loss(regularizer.loss, self.make_context(setup, fuse_extra=True), regularizer,
                          "loss() with extra_states")
        separate = self._losses(setup)
        assert sorted(fused) == sorted(separate), (
            f"loss() with extra_states returned keys {sorted(fused)}; without, {sorted(separate)}")
        for key, value in fused.items():
            expected = float(separate[key].detach())
            assert math.isclose(float(value.detach()), expected, rel_tol=1e-4, abs_tol=1e-6), (
                f"loss()['{key}'] = {float(value.detach()):.6g} from the joined network call but {expected:.6g} "
                "from separate calls: extra_states must be the states loss() would otherwise evaluate")
        check_gradients(fused, setup.policy, "loss() with extra_states")
