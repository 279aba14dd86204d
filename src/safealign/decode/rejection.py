"""Rejection sampling (``rejection``): draw small batches until k candidates pass the cost screen.

Cheaper than best-of-N when most samples are already safe (it stops early) and as safe when they are not
(it keeps drawing, up to ``max_samples``). Among the accepted candidates the best by the ranking key wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from safealign.config import option, require
from safealign.data.records import Message
from safealign.decode.base import Candidate, Decoder, DecoderConfig, Meter, Outcome, feasible_mask


@dataclass
class RejectionConfig(DecoderConfig):
    """Rejection sampling with a sample budget."""

    k: int = option(1, help="stop once this many candidates pass the cost screen")
    batch: int = option(2, help="candidates drawn per round (small batches waste fewer samples)")
    max_samples: int = option(16, help="sample budget per prompt; then the fallback rule applies")

    def validate(self) -> None:
        super().validate()
        require(self.k >= 1, "k must be >= 1")
        require(self.batch >= 1, "batch must be >= 1")
        require(self.max_samples >= self.k, "max_samples must be >= k")


class RejectionDecoder(Decoder):
    """Draw ``batch`` at a time, score, stop at ``k`` feasible candidates or ``max_samples`` draws."""

    name = "rejection"
    config_class = RejectionConfig

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: RejectionConfig = self.cfg  # type: ignore[assignment]
        cands: list[Candidate] = []
        while len(cands) < cfg.max_samples:
            n = min(cfg.batch, cfg.max_samples - len(cands))
            new = self.candidates_from(self.sample(messages, meter, n)[0])
            meter.n_candidates += len(new)
            meter.rounds += 1
            self.score(messages, new, meter)
            cands.extend(new)
            ok = feasible_mask([c.cost for c in cands], [c.cost_std for c in cands], cfg.max_cost, cfg.kappa_cost)
            if int(ok.sum()) >= cfg.k:
                break
        return self.outcome_of(cands, self.select(cands))
