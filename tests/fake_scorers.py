"""Deterministic fake scorers with known scores, for trainer and decoder tests."""

from __future__ import annotations

import numpy as np

from safealign.scoring.base import Scorer, Scores


class LengthScorer(Scorer):
    """score = sign * (len(text) / scale - 1): known, varied, deterministic."""

    def __init__(self, kind: str = "reward", sign: float = 1.0, scale: float = 20.0):
        self.kind, self.sign, self.scale = kind, sign, scale

    def score(self, prompts, responses) -> Scores:
        m = np.array([self.sign * (len(r) / self.scale - 1.0) for r in responses], dtype=np.float64)
        return Scores(m, np.zeros_like(m))


class NaNScorer(Scorer):
    kind = "cost"

    def score(self, prompts, responses) -> Scores:
        m = np.full(len(responses), np.nan)
        return Scores(m, np.zeros_like(m))


class PromptNumberCost(Scorer):
    """cost = the number that ends the prompt ("benign request number 3" -> 3.0); counts its calls."""

    kind = "cost"

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prompts, responses) -> Scores:
        self.calls += 1
        m = np.array([float(p[-1]["content"].split()[-1]) for p in prompts], dtype=np.float64)
        return Scores(m, np.zeros_like(m))
