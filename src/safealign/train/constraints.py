"""Constraint handlers: how a cost constraint turns into the training reward, and how its multipliers move.

Each handler is a small class (see ``../shared/design/constraints.md``). The trainer calls, per step:

    R = handler.shaped_reward(reward, cost, group)   # before advantages: tensors of shape [N]
    ... policy update ...
    handler.update(cost, group)                        # dual step on the scored batch

and logs ``handler.metrics()``; ``state_dict`` / ``load_state_dict`` go into checkpoints. ``group`` holds the
prompt index of each sample (the k samples of one prompt share it) for per-prompt variants.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

import torch

from safealign.config import ConfigBase, option, require


class ConstraintHandler(abc.ABC):
    """Base class; subclasses register themselves under ``name`` for configs and the CLI."""

    name: str = ""
    registry: dict[str, type[ConstraintHandler]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            ConstraintHandler.registry[cls.name] = cls

    @abc.abstractmethod
    def shaped_reward(self, reward: torch.Tensor, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Training reward per sample. reward, cost: [N] float; group: [N] long -> [N] float."""

    def update(self, cost: torch.Tensor, group: torch.Tensor) -> None:
        """Dual step after the policy step (no-op for handlers without multipliers)."""
        return None

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class CostWindow:
    """Sliding window of recent costs (Safe RLHF estimates J_c by the mean of the last W episodes)."""

    def __init__(self, size: int):
        self.size = size
        self.buf = torch.empty(0, dtype=torch.float64)

    def extend(self, values: torch.Tensor) -> None:
        self.buf = torch.cat([self.buf, values.detach().double().flatten().cpu()])[-self.size:]

    def __len__(self) -> int:
        return self.buf.numel()

    def mean(self) -> float:
        return float(self.buf.mean()) if len(self) else math.nan

    def tensor(self) -> torch.Tensor:
        return self.buf

    def state(self) -> list[float]:
        return self.buf.tolist()

    def load(self, values: list[float]) -> None:
        self.buf = torch.tensor(values, dtype=torch.float64)[-self.size:]


@dataclass
class ConstraintConfig(ConfigBase):
    """The safety constraint and its multiplier dynamics (see ../shared/design/constraints.md)."""

    method: str = option(
        "rectified",
        help="reward_only | fixed | expected (Safe RLHF) | rectified (RePO) | cvar | dual (iterative) | pessimistic (HC-RLHF)")
    threshold: float = option(0.0, help="cost budget d; with the cost model's convention, 0 separates safe from unsafe")
    threshold_quantile: float = option(
        0.0, help="> 0: before the first step, raise d to this quantile of the costs of the policy's own answers to "
                  "held-in benign prompts (look-alikes first): answers known to be safe set where a harsh cost "
                  "model's line goes; never lowers d. 0 = off")
    threshold_prompts: int = option(48, help="benign prompts answered (once each) for threshold_quantile")
    lambda_init: float = option(1.0, help="initial Lagrange multiplier (the fixed value for method=fixed)")
    lambda_lr: float = option(0.1, help="dual step size")
    lambda_max: float = option(50.0, help="upper clamp of the multiplier")
    window: int = option(256, help="recent costs averaged for the dual step (Safe RLHF's episode window)")
    update_delay: int = option(0, help="policy steps before the multiplier starts to move")
    rectified_delta: float = option(0.0, help="RePO: tolerated mean rectified cost; 0 means lambda never decreases")
    cvar_alpha: float = option(0.9, help="CVaR confidence level: the constraint covers the worst (1 - alpha) of costs; "
                                          "0 recovers the expected-cost constraint")
    cvar_scope: Literal["batch", "prompt"] = option(
        "batch", help="CVaR over the batch's cost distribution, or per prompt over its k samples")
    cvar_anneal_steps: int = option(0, help="soft-risk schedule: anneal the tail from the mean to 1-alpha over N steps")
    dual_inner_steps: int = option(8, help="dual: policy steps at fixed lambda between two dual steps")
    dual_batches: int = option(1, help="dual: most recent batches whose costs estimate E[C] for the dual step")
    hc_delta: float = option(0.05, help="pessimistic (HC-RLHF): failure probability of the later safety test")
    hc_c1: float = option(1.0, help="pessimistic: inflation C1 of the training-window term t / sqrt(n_batch)")
    hc_c2: float = option(1.0, help="pessimistic: inflation C2 of the safety-test term t / sqrt(n_safety)")
    hc_n_safety: int = option(500, help="pessimistic: size of the held-out safety-test set (set from the split)")
    hc_cost_transform: Literal["raw", "sigmoid", "clip"] = option(
        "raw", help="pessimistic: constrained quantity; must match the safety test's (sigmoid = P(unsafe))")
    hc_std_gradient: bool = option(False, help="pessimistic: add the gradient of the k*std term (HC-RLHF code)")

    def validate(self) -> None:
        known = set(ConstraintHandler.registry) | {"pessimistic"}
        require(self.method in known, f"unknown constraint method '{self.method}'; choose from {sorted(known)}")
        require(self.lambda_init >= 0, "lambda_init must be >= 0")
        require(self.lambda_lr >= 0, "lambda_lr must be >= 0")
        require(self.lambda_max > 0, "lambda_max must be > 0")
        require(self.window >= 1, "window must be >= 1")
        require(0.0 <= self.cvar_alpha < 1.0, "cvar_alpha must be in [0, 1)")
        require(self.dual_inner_steps >= 1 and self.dual_batches >= 1, "dual_inner_steps and dual_batches must be >= 1")
        require(0 < self.hc_delta < 1 and self.hc_n_safety >= 2, "hc_delta must be in (0, 1), hc_n_safety >= 2")
        require(0.0 <= self.threshold_quantile < 1.0 and self.threshold_prompts >= 1,
                "threshold_quantile must be in [0, 1) and threshold_prompts >= 1")
        require(not (self.threshold_quantile and self.method == "pessimistic"),
                "threshold_quantile cannot move the threshold of the pessimistic (HC-RLHF) constraint: its safety "
                "test certifies the configured threshold")


def build_handler(cfg: ConstraintConfig) -> ConstraintHandler:
    if cfg.method == "pessimistic" and "pessimistic" not in ConstraintHandler.registry:
        import safealign.certify.handler  # noqa: F401  (registers the HC-RLHF handler)
    return ConstraintHandler.registry[cfg.method](cfg)


class LagrangianHandler(ConstraintHandler):
    """Shared plumbing: R = r - lambda * c~ where c~ = transformed_cost(c); lambda and a cost window."""

    def __init__(self, cfg: ConstraintConfig):
        self.cfg = cfg
        self.lam = float(cfg.lambda_init)
        self.window = CostWindow(cfg.window)
        self.steps = 0

    def transformed_cost(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """The cost stream the multiplier prices (identity for the expected-cost constraint)."""
        return cost

    def shaped_reward(self, reward: torch.Tensor, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        # GRPO: the 1/(1 + lambda) rescaling of Safe RLHF's PPO advantage cancels under group std normalisation.
        return reward - self.lam * self.transformed_cost(cost, group)

    def combine_advantages(self, adv_reward: torch.Tensor, adv_cost: torch.Tensor) -> torch.Tensor:
        """PPO form (Safe RLHF): (A_r - lambda A_c) / (1 + lambda); adv_*: [N, T]."""
        return (adv_reward - self.lam * adv_cost) / (1.0 + self.lam)

    def update(self, cost: torch.Tensor, group: torch.Tensor) -> None:
        self.window.extend(self.dual_signal_samples(cost, group))
        self.steps += 1
        if self.steps > self.cfg.update_delay:
            self.lam = min(max(self.dual_step(self.lam), 0.0), self.cfg.lambda_max)

    def dual_signal_samples(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return cost

    def dual_step(self, lam: float) -> float:
        return lam

    def metrics(self) -> dict[str, float]:
        return {"lambda": self.lam, "cost_window_mean": self.window.mean()}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "window": self.window.state(), "steps": self.steps, "threshold": self.cfg.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam, self.steps = float(state["lam"]), int(state["steps"])
        self.window.load(state["window"])
        self.cfg.threshold = float(state.get("threshold", self.cfg.threshold))  # a calibrated d survives resume


class RewardOnly(LagrangianHandler):
    """Baseline: ignore the cost."""

    name = "reward_only"

    def __init__(self, cfg: ConstraintConfig):
        super().__init__(cfg)
        self.lam = 0.0

    def dual_step(self, lam: float) -> float:
        return 0.0


class FixedPenalty(LagrangianHandler):
    """Baseline: reward shaping r - lambda c with a hand-set lambda."""

    name = "fixed"


class ExpectedCost(LagrangianHandler):
    """Safe RLHF: E[C] <= d; log-lambda SGD on -(J_c - d) * exp(log_lambda), J_c the window mean."""

    name = "expected"

    def dual_step(self, lam: float) -> float:
        lam = max(lam, 1e-8)  # log-parametrised: lambda stays positive, so it can rise again from near 0
        grad_log_lam = (self.window.mean() - self.cfg.threshold) * lam  # d/dlog_lam of (J_c - d) lam
        return math.exp(math.log(lam) + self.cfg.lambda_lr * grad_log_lam)


class Rectified(LagrangianHandler):
    """RePO: every prompt must satisfy C <= d; penalty lambda [C - d]^+ only on violating responses.

    Safe responses contribute no cost gradient (helpfulness is kept where safety holds) and no prompt can
    bank negative cost for another; one global lambda follows the mean rectified violation.
    """

    name = "rectified"

    def transformed_cost(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return (cost - self.cfg.threshold).clamp(min=0.0)

    def dual_signal_samples(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        return (cost - self.cfg.threshold).clamp(min=0.0)

    def dual_step(self, lam: float) -> float:
        return lam + self.cfg.lambda_lr * (self.window.mean() - self.cfg.rectified_delta)


def cvar(values: torch.Tensor, tail: float) -> float:
    """CVaR of the worst ``tail`` fraction: mean of the top tail*N values, boundary sample weighted fractionally."""
    v = torch.sort(values.double().flatten(), descending=True).values
    n = v.numel()
    if n == 0:
        return math.nan
    k = tail * n
    whole = int(math.floor(k + 1e-12))
    total = float(v[:whole].sum())
    if whole < n and k - whole > 1e-12:
        total += (k - whole) * float(v[whole])
    return total / k


class CVaRConstraint(LagrangianHandler):
    """CVaR_alpha(C) <= d in the Rockafellar-Uryasev form nu + E[(C - nu)^+] / (1 - alpha).

    nu is the closed-form alpha-quantile (of the window, or of each prompt's k samples); only tail samples
    carry extra weight lambda / (1 - alpha). alpha = 0 gives nu + E[C - nu] = E[C]: the expected constraint.
    """

    name = "cvar"

    def tail(self) -> float:
        target = 1.0 - self.cfg.cvar_alpha
        if self.cfg.cvar_anneal_steps <= 0:
            return target
        frac = min(self.steps / self.cfg.cvar_anneal_steps, 1.0)  # soft-risk: from the mean (tail 1) to target
        return 1.0 + frac * (target - 1.0)

    def nu(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """VaR per sample: [N]."""
        q = 1.0 - self.tail()
        if self.cfg.cvar_scope == "prompt":
            out = torch.empty_like(cost)
            for g in group.unique():
                m = group == g
                out[m] = torch.quantile(cost[m].double(), q).to(cost.dtype)
            return out
        ref = torch.cat([self.window.tensor().to(cost.dtype), cost.detach().flatten()]) if len(self.window) else cost
        return torch.full_like(cost, float(torch.quantile(ref.double(), q)))

    def transformed_cost(self, cost: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        nu = self.nu(cost, group)
        return nu + (cost - nu).clamp(min=0.0) / self.tail()

    def dual_step(self, lam: float) -> float:
        return lam + self.cfg.lambda_lr * (cvar(self.window.tensor(), self.tail()) - self.cfg.threshold)

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "cvar_window": cvar(self.window.tensor(), self.tail()), "cvar_tail": self.tail()}


class DualIterative(LagrangianHandler):
    """Dual-based iterative method: maximise r - lambda c for M steps at fixed lambda, then one projected
    dual step lambda <- max(0, lambda - eta (d - E[C])) on the costs of the latest policy's samples."""

    name = "dual"

    def __init__(self, cfg: ConstraintConfig):
        super().__init__(cfg)
        self.recent: deque[torch.Tensor] = deque(maxlen=cfg.dual_batches)
        self.dual_steps = 0

    def update(self, cost: torch.Tensor, group: torch.Tensor) -> None:
        self.window.extend(cost)
        self.recent.append(cost.detach().double().flatten().cpu())
        self.steps += 1
        if self.steps > self.cfg.update_delay and self.steps % self.cfg.dual_inner_steps == 0:
            mean_cost = float(torch.cat(list(self.recent)).mean())
            self.lam = min(max(0.0, self.lam - self.cfg.lambda_lr * (self.cfg.threshold - mean_cost)),
                           self.cfg.lambda_max)
            self.dual_steps += 1

    def metrics(self) -> dict[str, float]:
        return {**super().metrics(), "dual_steps": float(self.dual_steps)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "recent": [t.tolist() for t in self.recent], "dual_steps": self.dual_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.recent.clear()
        self.recent.extend(torch.tensor(v, dtype=torch.float64) for v in state["recent"])
        self.dual_steps = int(state["dual_steps"])


@dataclass
class RefusalBudgetConfig(ConfigBase):
    """Over-refusal as a second constraint: refused answers to *benign*-pool prompts at most ``limit`` of them.

    The cost constraint alone only pushes towards refusing; a policy that learns it as "refuse what sounds
    alarming" pays for that only through the reward model. This constraint gives over-refusal its own
    multiplier: mu rises while the benign refusal rate is above the limit and falls back to 0 below it.
    """

    limit: float = option(1.0, help="tolerated share of refused answers to benign-pool prompts (1 = off)")
    lambda_init: float = option(0.0, help="initial multiplier mu")
    lambda_lr: float = option(2.0, help="dual step size of mu (per unit of refusal-rate excess)")
    lambda_max: float = option(20.0, help="upper clamp of mu")
    window: int = option(64, help="recent benign answers whose refusal rate drives the dual step")

    @property
    def enabled(self) -> bool:
        return self.limit < 1.0

    def validate(self) -> None:
        require(0.0 <= self.limit <= 1.0, "over_refusal.limit is a share, in [0, 1]")
        require(self.lambda_init >= 0 and self.lambda_lr >= 0 and self.lambda_max > 0,
                "over_refusal: lambda_init and lambda_lr must be >= 0, lambda_max > 0")
        require(self.window >= 1, "over_refusal.window must be >= 1")


class RefusalBudget:
    """Constraint P(refuse | benign prompt) <= limit with multiplier mu: R = r - mu * 1[benign and refused].

    Dual step (projected gradient ascent on the Lagrangian): mu <- clip(mu + eta (rate - limit), 0, mu_max),
    rate = refusal share of the last ``window`` benign answers. Only meaningful where advantages keep the
    multipliers' scale (``advantage_scale: batch`` or ``none``): with GRPO's per-group std, a refusal's advantage
    saturates near -(k - 1) / sqrt(k) once mu ranks it well below the rest of its group, whatever mu is.
    """

    def __init__(self, cfg: RefusalBudgetConfig):
        self.cfg = cfg
        self.mu = float(cfg.lambda_init) if cfg.enabled else 0.0
        self.window = CostWindow(cfg.window)

    def penalty(self, refused: torch.Tensor, harmful: torch.Tensor) -> torch.Tensor:
        """refused, harmful: [N] bool -> [N] float, subtracted from the reward."""
        return self.mu * (refused & ~harmful).float()

    def update(self, refused: torch.Tensor, harmful: torch.Tensor) -> None:
        """refused, harmful: [N] bool over the policy's own samples of one step."""
        if not self.cfg.enabled or bool(harmful.all()):
            return
        self.window.extend(refused[~harmful].float())
        self.mu = min(max(self.mu + self.cfg.lambda_lr * (self.window.mean() - self.cfg.limit), 0.0),
                      self.cfg.lambda_max)

    def metrics(self) -> dict[str, float]:
        return {"mu": self.mu, "benign_refusal_window": self.window.mean()} if self.cfg.enabled else {}

    def state_dict(self) -> dict[str, Any]:
        return {"mu": self.mu, "window": self.window.state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mu = float(state["mu"])
        self.window.load(state["window"])
