"""Segment-level guided search (``guided``): grow responses a block at a time, keep the best beams.

Blockwise controlled decoding (Mudgal et al. 2024) with a cost term: every live beam is extended by
``expand`` sampled blocks of ``segment_tokens`` tokens; the children are scored with the process (prefix)
scorers and the best ``beam_width`` unfinished ones by ``LCB_R - lambda * mu_C`` survive. ``lambda`` is given,
or the smallest value of ``lam_grid`` whose surviving beams all satisfy the cost bound (so the search
trades reward for safety only as much as it must). Finished children are scored with the outcome scorers
and the final answer is chosen by the same constrained rule as best-of-N (fail closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from safealign.config import option, require
from safealign.data.records import Message
from safealign.decode.base import Candidate, Decoder, DecoderConfig, Meter, Outcome


@dataclass
class GuidedConfig(DecoderConfig):
    """Segment-level beam search on process scores."""

    segment_tokens: int = option(16, help="tokens per block (M); M >= max_new_tokens turns this into best-of-expand")
    beam_width: int = option(2, help="unfinished beams kept after each step; the search also stops once this "
                                     "many responses have finished")
    expand: int = option(4, help="blocks sampled per live beam per step (K)")
    search_lam: float | None = option(
        None, help="fixed lambda of the beam key LCB_R - lambda * mu_C; None tunes it per step over lam_grid")
    lam_grid: list[float] = option(
        default_factory=lambda: [0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0],
        help="lambdas tried (ascending) when search_lam is None: the smallest whose kept beams all have "
             "cost bound <= max_cost wins, else the largest")
    prune_unsafe: bool = option(
        False, help="drop children whose cost lower bound (mu_C - kappa_cost sigma_C) exceeds max_cost "
                    "(certified unsafe) before ranking; with nothing left the decoder refuses early")

    def validate(self) -> None:
        super().validate()
        require(self.segment_tokens >= 1, "segment_tokens must be >= 1")
        require(self.beam_width >= 1, "beam_width must be >= 1")
        require(self.expand >= 1, "expand must be >= 1")
        require(self.search_lam is None or self.search_lam >= 0, "search_lam must be >= 0")
        require(len(self.lam_grid) >= 1 and all(x >= 0 for x in self.lam_grid), "lam_grid: non-negative values")


def choose_lambda(reward_lcb: Sequence[float] | np.ndarray, cost_mu: Sequence[float] | np.ndarray,
                  cost_ucb: Sequence[float] | np.ndarray, width: int, max_cost: float,
                  grid: Sequence[float]) -> tuple[float, list[int]]:
    """Smallest lambda in ``grid`` whose top-``width`` children by LCB_R - lambda mu_C all satisfy
    cost_ucb <= max_cost; if none does, the largest lambda. Arrays: [N]. Returns (lambda, kept indices)."""
    r, c, cu = (np.asarray(x, float) for x in (reward_lcb, cost_mu, cost_ucb))
    lams = sorted(float(x) for x in grid)
    top: list[int] = []
    for lam in lams:
        key = r - lam * c
        top = [int(i) for i in np.argsort(-key, kind="stable")[:width]]
        if all(cu[i] <= max_cost for i in top):
            return lam, top
    return lams[-1], top


class GuidedDecoder(Decoder):
    """Beam search over sampled blocks, ranked by prefix reward and cost."""

    name = "guided"
    config_class = GuidedConfig

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: GuidedConfig = self.cfg  # type: ignore[assignment]
        tok = self.engine.tokenizer
        t_max = self.sampling.max_new_tokens
        beams: list[list[int]] = [[]]  # accepted token ids of each live beam; all live beams share a length
        done: list[Candidate] = []
        lams: list[float] = []
        while beams and len(done) < cfg.beam_width:
            room = min(cfg.segment_tokens, t_max - len(beams[0]))
            prefixes = [tok.decode(b, skip_special_tokens=True) for b in beams]
            rows = self.sample(messages, meter, cfg.expand, room, prefixes=prefixes)
            children = [c for b, row in zip(beams, rows, strict=True)
                        for c in self.candidates_from(row, heads=[b] * len(row))]
            meter.n_candidates += len(children)
            meter.rounds += 1
            finished = [c.finish_reason == "eos" or len(c.token_ids) >= t_max for c in children]
            self.score(messages, children, meter, prefix=[not f for f in finished])
            done.extend(c for c, f in zip(children, finished, strict=True) if f)
            live = [c for c, f in zip(children, finished, strict=True) if not f]
            if cfg.prune_unsafe:
                live = [c for c in live if c.cost - cfg.kappa_cost * c.cost_std <= cfg.max_cost]
            if not live:
                break
            r_lcb = [c.reward - cfg.kappa_reward * c.reward_std if self.reward is not None else 0.0 for c in live]
            c_mu = [c.cost for c in live]
            c_ucb = [c.cost + cfg.kappa_cost * c.cost_std for c in live]
            if cfg.search_lam is None:
                lam, keep = choose_lambda(r_lcb, c_mu, c_ucb, cfg.beam_width, cfg.max_cost, cfg.lam_grid)
            else:
                lam = cfg.search_lam
                key = np.asarray(r_lcb) - lam * np.asarray(c_mu)
                keep = [int(i) for i in np.argsort(-key, kind="stable")[: cfg.beam_width]]
            lams.append(lam)
            beams = [live[i].token_ids for i in keep]
        if not done:
            return Outcome(None, False, "refusal", "every partial response was certified unsafe",
                           meta={"lambdas": lams})
        out = self.outcome_of(done, self.select(done))
        out.meta["lambdas"] = lams
        return out
