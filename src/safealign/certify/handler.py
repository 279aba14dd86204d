r"""HC-RLHF stage 1: the ``pessimistic`` constraint handler (candidate selection).

It mirrors the expected-cost Lagrangian (``../shared/design/constraints.md`` §1) but enforces the constraint on
the bound the safety test will apply, inflated for the training estimate's own noise:

    U = mean_W + (C1 t_{1-delta, n_W-1} / sqrt(n_W) + C2 t_{1-delta, n_s-1} / sqrt(n_s)) * std_W  <=  d

over a sliding window ``W`` of the most recent ``n_W`` sample costs, with ``n_s`` the size of the held-out
safety-test set. Dual step: gradient ascent on ``log_lam * (U - d)`` in log space,

    log_lam <- clip(log_lam + lambda_lr * (U - d), log(lambda_min), log(lambda_max))     (lam = exp(log_lam))

so lam rises exactly when the pessimistic cost exceeds d and falls otherwise, by a factor exp(lr |U - d|) per
step. (The HC-RLHF code takes an SGD step on ``-(U - d) exp(log_lam)``, i.e. ``lr (U - d) lam``, whose step
vanishes as lam -> 0 and overshoots when lam is large; the log-space step keeps the sign and avoids both. The
floor lambda_min stands in for 0, so a multiplier that slept through a safe phase wakes up in a few steps.)
Policy reward (GRPO, per sample):

    R_i = r_i - lam * c_i

With ``std_gradient`` the cost also carries the policy gradient of the ``k * std`` term (HC-RLHF code):
``c~_i = c_i + k (c_i^2 - 2 c_i mean_W) / (2 std_W)``, since ``d std = (d E[c^2] - 2 mean d mean) / (2 std)``.
``cost_transform`` (raw / sigmoid / clip) must match the safety test's, so both stages bound the same quantity.
Passing the training constraint does not certify anything: only the stage-2 safety test on held-out prompts does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

from safealign.certify.bounds import pessimistic_coefficient
from safealign.config import ConfigBase, option, require
from safealign.train.constraints import ConstraintHandler


@dataclass
class PessimisticConfig(ConfigBase):
    """Options of the ``pessimistic`` (HC-RLHF candidate-selection) constraint handler."""

    threshold: float = option(0.0, help="cost budget d of E[cost] <= d (cost > 0 is unsafe, so 0 is meaningful)")
    delta: float = option(0.05, help="failure probability of the later safety test; t quantiles at 1 - delta")
    c1: float = option(1.0, help="inflation of the training-window term C1 * t / sqrt(n_window)")
    c2: float = option(1.0, help="inflation of the safety-test term C2 * t / sqrt(n_safety)")
    n_safety: int = option(500, help="number of held-out safety-test prompts (set it from the candidate/safety split)")
    lambda_init: float = option(1.0, help="initial Lagrange multiplier (> 0: it is kept as log lambda)")
    lambda_lr: float = option(0.1, help="step on log lambda per unit of (pessimistic cost - d)")
    lambda_max: float = option(1e6, help="upper clamp on lambda (the HC-RLHF code's 1e6)")
    lambda_min: float = option(1e-6, help="lower clamp on lambda (stands in for 0; log space cannot reach 0)")
    window: int = option(256, help="number of recent sample costs the pessimistic bound is estimated from")
    update_delay_steps: int = option(0, help="steps without dual updates at the start of training")
    cost_transform: Literal["raw", "sigmoid", "clip"] = option(
        "raw", help="the cost quantity constrained; use the same as the safety test's (sigmoid = P(unsafe))")
    cost_low: float | None = option(None, help="clip range (cost_transform 'clip')")
    cost_high: float | None = option(None, help="clip range (cost_transform 'clip')")
    std_gradient: bool = option(False, help="add the policy gradient of the k*std term to each sample's cost "
                                "(HC-RLHF code); off: R = r - lambda c as in the expected-cost handler")

    def validate(self) -> None:
        require(0 < self.delta < 1, "delta must be in (0, 1)")
        require(self.c1 >= 0 and self.c2 >= 0, "c1 and c2 must be >= 0")
        require(self.n_safety >= 2, "n_safety must be >= 2 (the t quantile needs n - 1 >= 1 degrees of freedom)")
        require(self.lambda_init > 0, "lambda_init must be > 0 (lambda is parametrised as exp(log lambda))")
        require(self.lambda_lr > 0, "lambda_lr must be > 0")
        require(0 < self.lambda_min <= self.lambda_init <= self.lambda_max,
                "need 0 < lambda_min <= lambda_init <= lambda_max")
        require(self.window >= 2, "window must be >= 2 (the bound needs a standard deviation)")
        require(self.update_delay_steps >= 0, "update_delay_steps must be >= 0")
        if self.cost_transform == "clip":
            require(self.cost_low is not None and self.cost_high is not None and self.cost_high > self.cost_low,
                    "cost_transform 'clip' needs cost_low < cost_high")


# The trainer's constraint config shares threshold, lambda_*, window and update_delay with ours; HC-RLHF's own
# options may sit there with an ``hc_`` or ``pessimistic_`` prefix (hc_delta, hc_n_safety, ...).
_PREFIXES = ("hc_", "pessimistic_", "")
_ALIASES = {"update_delay_steps": ("update_delay_steps", "update_delay")}


def config_from_any(cfg: Any) -> PessimisticConfig:
    """A :class:`PessimisticConfig` from itself, a mapping (strict keys), or another config object.

    From another object (the trainer's constraint config) every field is read from the first attribute present
    among ``hc_<name>``, ``pessimistic_<name>``, ``<name>``; a ``lambda_init`` of 0 is lifted to ``lambda_min``,
    since the multiplier is kept as log lambda.
    """
    if isinstance(cfg, PessimisticConfig):
        return cfg
    if isinstance(cfg, Mapping):
        return PessimisticConfig.from_dict(cfg, where="pessimistic handler")
    picked: dict[str, Any] = {}
    for name in PessimisticConfig.__dataclass_fields__:
        for attr in (p + n for n in _ALIASES.get(name, (name,)) for p in _PREFIXES):
            if hasattr(cfg, attr):
                picked[name] = getattr(cfg, attr)
                break
    if "lambda_init" in picked:
        lo = picked.get("lambda_min", PessimisticConfig.lambda_min)
        picked["lambda_init"] = max(float(picked["lambda_init"]), lo)
    return PessimisticConfig.from_dict(picked, where=f"pessimistic handler (from {type(cfg).__name__})")


class PessimisticHandler(ConstraintHandler):
    """Lagrangian on the pessimistic (safety-test-inflated) upper bound of the mean cost.

    Construct with a :class:`PessimisticConfig`, keyword options, or the trainer's constraint config (whose
    matching fields are used; see :func:`config_from_any`).
    """

    name = "pessimistic"
    config_class = PessimisticConfig

    def __init__(self, cfg: Any = None, **overrides: Any):
        if cfg is None:
            self.cfg = PessimisticConfig.from_dict(overrides, where="pessimistic handler")
        else:
            base = config_from_any(cfg)
            self.cfg = (PessimisticConfig.from_dict({**base.to_dict(), **overrides}, where="pessimistic handler")
                        if overrides else base)
        self.log_lambda = math.log(self.cfg.lambda_init)
        self.costs = torch.empty(0, dtype=torch.float64)  # the window, most recent last
        self.steps = 0
        self.last: dict[str, float] = {}

    @property
    def lam(self) -> float:
        return math.exp(self.log_lambda)

    @lam.setter
    def lam(self, value: float) -> None:
        self.log_lambda = math.log(min(max(value, self.cfg.lambda_min), self.cfg.lambda_max))

    def _stats(self, extra: torch.Tensor | None = None) -> tuple[float, float, int] | None:
        """(mean, std, n) of the window (plus ``extra`` costs while the window is still short)."""
        values = self.costs
        if extra is not None and len(values) < 2:
            values = torch.cat([values, extra.detach().flatten().double().cpu()])
        if len(values) < 2:
            return None
        return float(values.mean()), float(values.std(unbiased=True)), len(values)

    def coefficient(self, n_window: int) -> float:
        return pessimistic_coefficient(n_window, self.cfg.n_safety, self.cfg.delta, self.cfg.c1, self.cfg.c2)

    def pessimistic_cost(self) -> float:
        """U over the current window (nan before two costs were seen)."""
        s = self._stats()
        if s is None:
            return math.nan
        mean, std, n = s
        return mean + self.coefficient(n) * std

    def transform(self, cost: torch.Tensor) -> torch.Tensor:
        """The constrained cost quantity: the safety test's ``cost_transform`` applied per sample."""
        if self.cfg.cost_transform == "sigmoid":
            return torch.sigmoid(cost)
        if self.cfg.cost_transform == "clip":
            return cost.clamp(self.cfg.cost_low, self.cfg.cost_high)
        return cost

    def transformed_cost(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """The per-sample cost the multiplier prices (also the cost stream for PPO's cost advantage)."""
        c = self.transform(cost)
        if self.cfg.std_gradient:
            s = self._stats(c)
            if s is not None and s[1] > 0:
                mean, std, n = s
                c = c + self.coefficient(n) * (c * c - 2 * c * mean) / (2 * std)
        return c

    def shaped_reward(self, reward: torch.Tensor, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return reward - self.lam * self.transformed_cost(cost, group).to(reward.dtype)

    def combine_advantages(self, adv_reward: torch.Tensor, adv_cost: torch.Tensor) -> torch.Tensor:
        """PPO form (Safe RLHF): (A_r - lambda A_c) / (1 + lambda), A_c from :meth:`transformed_cost`."""
        return (adv_reward - self.lam * adv_cost) / (1.0 + self.lam)

    def update(self, cost: torch.Tensor, group: torch.Tensor) -> None:
        new = self.transform(cost).detach().double().flatten().cpu()
        self.costs = torch.cat([self.costs, new])[-self.cfg.window:]
        self.steps += 1
        s = self._stats()
        if s is None:
            return
        mean, std, n = s
        k = self.coefficient(n)
        ucb = mean + k * std
        self.last = {"cost_ucb": ucb, "cost_window_mean": mean, "cost_std": std, "cost_n": float(n),
                     "ucb_coef": k, "slack": ucb - self.cfg.threshold}
        if self.steps <= self.cfg.update_delay_steps:
            return
        step = self.cfg.lambda_lr * (ucb - self.cfg.threshold)
        self.log_lambda = min(max(self.log_lambda + step, math.log(self.cfg.lambda_min)),
                              math.log(self.cfg.lambda_max))

    def metrics(self) -> dict[str, float]:
        return {"lambda": self.lam, **self.last}

    def state_dict(self) -> dict[str, Any]:
        return {"log_lambda": self.log_lambda, "window": self.costs.tolist(), "steps": self.steps,
                "last": dict(self.last), "config": self.cfg.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_lambda = float(state["log_lambda"])
        self.costs = torch.tensor(state["window"], dtype=torch.float64)[-self.cfg.window:]
        self.steps = int(state["steps"])
        self.last = dict(state.get("last", {}))
