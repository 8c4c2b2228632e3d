"""Network passes per iteration, for the compute-matched view of a comparison: every call of a
policy's ``predict`` (the policy's and the reference's, in rollouts, the update and the
regularizer) counted by its batch size, i.e. denoiser forward passes per sample. A backward pass
is not counted separately. A policy whose ``predict`` cannot be wrapped is not counted (None)."""

from __future__ import annotations

from typing import Any


class PassCounter:
    def __init__(self, *policies: Any):
        self.count, self.counting = 0, True
        wrapped: set[int] = set()
        for policy in policies:
            if policy is not None and id(policy) not in wrapped:
                self.counting &= self._wrap(policy)
                wrapped.add(id(policy))

    def _wrap(self, policy: Any) -> bool:
        original = policy.predict

        def predict(x_t, t, cond):
            self.count += int(x_t.shape[0])
            return original(x_t, t, cond)

        try:
            policy.predict = predict
        except (AttributeError, TypeError):  # slots or a frozen class
            return False
        return True

    def take(self) -> int | None:
        """The passes since the last call (None when some policy could not be counted)."""
        count, self.count = self.count, 0
        return count if self.counting else None
