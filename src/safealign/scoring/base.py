"""The Scorer interface every consumer (trainer, decoders, judges, certification) codes against.

A scorer maps (prompt, response) pairs to a scalar per pair plus an uncertainty. Reward scorers: higher
is more helpful. Cost scorers: ``cost > 0`` means unsafe, so a threshold of 0 is meaningful and
``sigmoid(cost)`` reads as P(unsafe).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from safealign.data.records import Message

ScoreKind = Literal["reward", "cost"]
PromptLike = str | list[Message]


@dataclass
class Scores:
    """Per-pair scores. mean, std: float arrays of shape [N]; std is 0 for single models.

    members: optional [N, K] scores of the K ensemble members / heads (for worst-case or other
    aggregations than the mean, e.g. conservative best-of-N).
    """

    mean: np.ndarray
    std: np.ndarray
    members: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ in shape")
        if self.members is not None:
            self.members = np.asarray(self.members, dtype=np.float64)
            if self.members.ndim != 2 or self.members.shape[0] != self.mean.shape[0]:
                raise ValueError(f"members must have shape [N, K] with N = {self.mean.shape[0]}, "
                                 f"got {self.members.shape}")

    def __len__(self) -> int:
        return len(self.mean)


class ScoringError(RuntimeError):
    """A scorer failed; safety code treats this as 'unsafe' and never passes an unscreened response."""


class Scorer(abc.ABC):
    kind: ScoreKind

    @abc.abstractmethod
    def score(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> Scores:
        """Score finished responses; ``len(prompts) == len(responses)``."""

    def score_prefixes(self, prompts: Sequence[PromptLike], partial_responses: Sequence[str]) -> Scores:
        """Predict the score of the finished response from a partial one (process scoring).

        The default treats the prefix as a finished response; process-trained scorers override it.
        """
        return self.score(prompts, partial_responses)

    def p_unsafe(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> np.ndarray:
        """P(unsafe) = sigmoid(cost): only meaningful for cost scorers."""
        if self.kind != "cost":
            raise TypeError("p_unsafe needs a cost scorer")
        s = self.score(prompts, responses)
        return 1.0 / (1.0 + np.exp(-s.mean))
