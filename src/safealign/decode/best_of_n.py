"""Best-of-N with a cost constraint (``best_of_n``): sample N, keep the best feasible one.

The constrained rule (design B2, InferenceGuard's "augmented safety") beats a Lagrangian mix at equal N
because it never trades safety for reward; ``lam`` > 0 with ``max_cost=inf`` gives the Lagrangian rule
(B1) and ``kappa_*`` > 0 the conservative-ensemble rule (B3), all through :func:`select_candidate`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safealign.config import option, require
from safealign.data.records import Message
from safealign.decode.base import Decoder, DecoderConfig, Meter, Outcome


@dataclass
class BestOfNConfig(DecoderConfig):
    """Best-of-N: draw ``n`` complete responses at once, then select."""

    n: int = option(8, help="responses sampled per prompt")

    def validate(self) -> None:
        super().validate()
        require(self.n >= 1, "n must be >= 1")


class BestOfNDecoder(Decoder):
    """Sample N, score all with the outcome scorers, return the best feasible one (or the fallback)."""

    name = "best_of_n"
    config_class = BestOfNConfig

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: BestOfNConfig = self.cfg  # type: ignore[assignment]
        cands = self.candidates_from(self.sample(messages, meter, cfg.n)[0])
        meter.n_candidates += len(cands)
        meter.rounds += 1
        self.score(messages, cands, meter)
        return self.outcome_of(cands, self.select(cands))


def kl_best_of_n(n: int) -> float:
    """KL(BoN_n || pi) = log n - (n - 1) / n (Beirami et al. 2024): the price of selection in nats."""
    if n < 1:
        raise ValueError("n must be >= 1")
    return math.log(n) - (n - 1) / n


def best_of_n_expectation(keys: Sequence[float], outcomes: Sequence[float], n: int) -> float:
    """Unbiased E[outcome of BoN-n] from N >= n i.i.d. draws (design §1, "cheap curve").

    Sort the draws by selection key ascending; the i-th (1-based) is the argmax of a random n-subset with
    probability C(i-1, n-1) / C(N, n). Ties in the key break toward the later draw in the sorted order.
    """
    keys_a, outs = np.asarray(keys, float), np.asarray(outcomes, float)
    big_n = len(keys_a)
    if outs.shape != keys_a.shape or not 1 <= n <= big_n:
        raise ValueError(f"need 1 <= n <= N and matching shapes, got n={n}, N={big_n}")
    order = np.argsort(keys_a, kind="stable")
    total = math.comb(big_n, n)
    weights = np.array([math.comb(i - 1, n - 1) / total for i in range(1, big_n + 1)])
    return float(np.dot(weights, outs[order]))
