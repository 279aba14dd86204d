"""Uncertainty-aware adaptive sampling (``adaptive``): sample only as much as the scorers' doubt requires.

Candidates are drawn in small batches. The reward and cost ensembles give a mean and a std per candidate,
hence bounds ``LCB_R = mu_R - kappa_R sigma_R``, ``UCB_R = mu_R + kappa_R sigma_R`` and
``UCB_C = mu_C + kappa_C sigma_C``. A candidate is *certified safe* when UCB_C <= max_cost and *certified
unsafe* when mu_C - kappa_C sigma_C > max_cost (dropped at once). Sampling stops as soon as a certified-safe
candidate exists whose lower reward bound leaves little to gain from one more draw (:func:`adaptive_stop`),
and goes on - up to the budget - while nothing is certified safe or the scorers are unsure about the
best one. So easy prompts cost one or two samples and the budget goes where the constraint binds or the
scorers disagree (design §9). ``block_tokens > 0`` applies the same rule to each block of a response
(prefix scorers), so an unsafe start costs a block, not a whole response.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from safealign.config import option, require
from safealign.data.records import Message
from safealign.decode.base import Candidate, Decoder, DecoderConfig, Meter, Outcome

StopRule = Literal["ei", "gain", "dominance"]


def expected_improvement(mean: float, std: float, threshold: float) -> float:
    """E[(X - threshold)^+] for X ~ N(mean, std^2) (closed form; std 0 gives (mean - threshold)^+)."""
    if std <= 0:
        return max(mean - threshold, 0.0)
    z = (mean - threshold) / std
    cdf = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (mean - threshold) * cdf + std * pdf


@dataclass(frozen=True)
class StopDecision:
    """Result of :func:`adaptive_stop` on the candidates drawn so far."""

    stop: bool
    best: int | None  # the best certified-safe candidate (None: none is certified safe)
    gain: float  # optimistic gain of drawing more (inf when nothing is certified safe)
    safe: np.ndarray  # bool [N]: certified safe
    unsafe: np.ndarray  # bool [N]: certified unsafe


def adaptive_stop(
    reward_mu: Sequence[float] | np.ndarray,
    reward_sd: Sequence[float] | np.ndarray,
    cost_mu: Sequence[float] | np.ndarray,
    cost_sd: Sequence[float] | np.ndarray,
    *,
    max_cost: float = 0.0,
    kappa_reward: float = 1.645,
    kappa_cost: float = 1.645,
    price: float = 0.1,
    rule: StopRule = "ei",
    prior_std: float = 1.0,
    prior_weight: float = 2.0,
) -> StopDecision:
    """The stopping rule of adaptive sampling, as a pure function of the scores so far (arrays [N]).

    best = argmax LCB_R over certified-safe candidates (UCB_C <= max_cost). Then, over the candidates not
    certified unsafe (S):

    - ``gain``: G = mean_{s in S} (UCB_R(s) - LCB_R(best))^+, the optimistic improvement one more draw like
      these would bring (the best's own 2 kappa sigma counts, so an unsure best keeps sampling going);
    - ``dominance``: G = max_{s in S, s != best} (UCB_R(s) - LCB_R(best))^+ (0 with no rival), i.e. with
      price 0: stop iff the best is confidently better than every rival.

    - ``ei`` (Weitzman-style): a new draw is certified safe with probability p = (n_safe + 1) / (n + 2) and
      then has value LCB_R ~ N(m, s^2), m and s fitted to LCB_R over S with s shrunk toward ``prior_std``
      (``prior_weight`` pseudo-draws); G = p * E[(X - LCB_R(best))^+]. Uncertain costs lower p (fewer
      certified draws), an unsure best lowers the bar LCB_R(best), so both move the decision.

    Stop iff a best exists and G <= price.
    """
    r_mu, r_sd = np.asarray(reward_mu, float), np.asarray(reward_sd, float)
    c_mu, c_sd = np.asarray(cost_mu, float), np.asarray(cost_sd, float)
    if not (r_mu.shape == r_sd.shape == c_mu.shape == c_sd.shape) or r_mu.ndim != 1:
        raise ValueError("reward and cost arrays must all have the same shape [N]")
    safe = c_mu + kappa_cost * c_sd <= max_cost
    unsafe = c_mu - kappa_cost * c_sd > max_cost
    if not safe.any():
        return StopDecision(False, None, float("inf"), safe, unsafe)
    lcb, ucb = r_mu - kappa_reward * r_sd, r_mu + kappa_reward * r_sd
    best = int(np.argmax(np.where(safe, lcb, -np.inf)))
    alive = ~unsafe
    if rule == "gain":
        gain = float(np.mean(np.maximum(ucb[alive] - lcb[best], 0.0)))
    elif rule == "dominance":
        rivals = alive.copy()
        rivals[best] = False
        gain = float(np.max(np.maximum(ucb[rivals] - lcb[best], 0.0))) if rivals.any() else 0.0
    elif rule == "ei":
        vals = lcb[alive]
        m = float(vals.mean())
        ss = float(((vals - m) ** 2).sum())
        s = math.sqrt((ss + prior_weight * prior_std**2) / max(len(vals) - 1 + prior_weight, 1e-9))
        p = (int(safe.sum()) + 1) / (len(r_mu) + 2)
        gain = p * expected_improvement(m, s, float(lcb[best]))
    else:
        raise ValueError(f"unknown stopping rule '{rule}'; use 'ei', 'gain' or 'dominance'")
    return StopDecision(gain <= price, best, gain, safe, unsafe)


@dataclass
class AdaptiveConfig(DecoderConfig):
    """Adaptive constrained sampling. kappa_reward / kappa_cost are the confidence multipliers of the bounds."""

    kappa_cost: float = option(
        0.0, help="kappa of UCB_C / LCB_C: calibrate it on a dev split (bench/decoding.py --dev --tune); 1.645 "
                  "is one-sided 95%% if sigma were exact Gaussian error. 0 (means only, U-) won on the dev split "
                  "with the current scorers, whose ensemble std did not predict their errors")
    kappa_reward: float = option(0.0, help="kappa of LCB_R / UCB_R in the stopping rule and the final choice")
    price: float = option(
        0.2, help="price of one more draw in reward units: stop when the estimated gain G <= price")
    rule: StopRule = option(
        "ei", help="stopping rule: ei (Weitzman-style expected improvement of one more draw), gain (design "
                   "§9 optimistic gain over the draws so far) or dominance (best's LCB_R vs rivals' UCB_R)")
    prior_std: float = option(
        0.5, help="ei rule: prior spread of LCB_R across a prompt's candidates (reward units), used while few "
                  "draws exist")
    prior_weight: float = option(2.0, help="ei rule: pseudo-draws behind prior_std")
    batch: int = option(1, help="candidates drawn per round (larger batches cost more tokens, less wall time)")
    min_samples: int = option(1, help="never stop before this many candidates (per block in block mode)")
    max_samples: int = option(16, help="budget: candidates per prompt (per block in block mode: K_max)")
    block_tokens: int = option(
        0, help="0: candidates are whole responses; > 0: blockwise (design §9), M tokens per block, scored "
                "with the process scorers")
    early_stop: bool = option(True, help="apply the stopping rule (False: always draw max_samples, = best-of-N)")

    def validate(self) -> None:
        super().validate()
        require(self.price >= 0, "price must be >= 0")
        require(self.batch >= 1, "batch must be >= 1")
        require(1 <= self.min_samples <= self.max_samples, "need 1 <= min_samples <= max_samples")
        require(self.block_tokens >= 0, "block_tokens must be >= 0")
        require(self.prior_std >= 0 and self.prior_weight >= 0, "prior_std and prior_weight must be >= 0")


class AdaptiveDecoder(Decoder):
    """Draw in batches until :func:`adaptive_stop` says stop or the budget is spent; fail closed."""

    name = "adaptive"
    config_class = AdaptiveConfig

    def _draw_until_stop(self, messages: list[Message], meter: Meter, head: list[int] | None,
                         max_new: int | None, t_max: int) -> tuple[list[Candidate], StopDecision | None]:
        """Candidates (whole responses, or blocks continuing ``head``) drawn under the stopping rule."""
        cfg: AdaptiveConfig = self.cfg  # type: ignore[assignment]
        tok = self.engine.tokenizer
        pool: list[Candidate] = []
        decision = None
        while len(pool) < cfg.max_samples:
            n = min(cfg.batch, cfg.max_samples - len(pool))
            if head is None:
                new = self.candidates_from(self.sample(messages, meter, n)[0])
                prefix = [False] * len(new)
            else:
                rows = self.sample(messages, meter, n, max_new, prefixes=[tok.decode(head, skip_special_tokens=True)])
                new = self.candidates_from(rows[0], heads=[head] * len(rows[0]))
                prefix = [not (c.finish_reason == "eos" or len(c.token_ids) >= t_max) for c in new]
            for c, p in zip(new, prefix, strict=True):
                c.meta["partial"] = p
            meter.n_candidates += len(new)
            meter.rounds += 1
            self.score(messages, new, meter, prefix=prefix)
            pool.extend(new)
            decision = self._decide(pool)
            if cfg.early_stop and len(pool) >= cfg.min_samples and decision.stop:
                break
        return pool, decision

    def _decide(self, pool: list[Candidate]) -> StopDecision:
        cfg: AdaptiveConfig = self.cfg  # type: ignore[assignment]
        zeros = [0.0] * len(pool)
        return adaptive_stop([c.reward for c in pool] if self.reward is not None else zeros,
                             [c.reward_std for c in pool] if self.reward is not None else zeros,
                             [c.cost for c in pool], [c.cost_std for c in pool], max_cost=cfg.max_cost,
                             kappa_reward=cfg.kappa_reward, kappa_cost=cfg.kappa_cost, price=cfg.price,
                             rule=cfg.rule, prior_std=cfg.prior_std, prior_weight=cfg.prior_weight)

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: AdaptiveConfig = self.cfg  # type: ignore[assignment]
        t_max = self.sampling.max_new_tokens
        if cfg.block_tokens == 0:
            pool, decision = self._draw_until_stop(messages, meter, None, None, t_max)
            out = self.outcome_of(pool, self.select(pool))
            out.meta.update(stopped_early=bool(decision and decision.stop and len(pool) < cfg.max_samples),
                            gain=decision.gain if decision else None)
            return out
        head: list[int] = []
        seen: list[Candidate] = []
        blocks = 0
        while True:
            room = min(cfg.block_tokens, t_max - len(head))
            pool, decision = self._draw_until_stop(messages, meter, head, room, t_max)
            seen.extend(pool)
            blocks += 1
            if decision is None or decision.best is None:  # nothing certified safe: fail closed
                return Outcome(None, False, "refusal", f"no certified-safe block at block {blocks}", seen,
                               meta={"blocks": blocks})
            best = pool[decision.best]
            if not best.meta["partial"]:  # finished: its scores are outcome scores, certified safe
                return Outcome(best, True, None, "", seen, meta={"blocks": blocks})
            head = best.token_ids
