"""Ensembles of separate scorers (K members), next to the K-heads-on-one-trunk ensemble of ModelScorer.

The mean / std convention is the same in both: mean over members of the member means, and std over the
members (plus, where members are themselves ensembles, their own spread), so a decoder can swap one
for the other. Members with different trunks (MiniLM, SmolLM2) give the most independent errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from safealign.scoring.base import PromptLike, Scorer, Scores


def combine(scores: Sequence[Scores]) -> Scores:
    """Pool member scores: mean of means; std = sqrt(variance of the means + mean within-member variance).

    The second term is the law of total variance: members that are ensembles themselves keep the
    uncertainty they report. members: [N, M] member means.
    """
    if not scores:
        raise ValueError("an ensemble needs at least one member")
    means = np.stack([s.mean for s in scores], axis=1)  # [N, M]
    within = np.stack([s.std ** 2 for s in scores], axis=1).mean(axis=1)  # [N]
    between = means.var(axis=1, ddof=1) if means.shape[1] > 1 else np.zeros(len(means))
    return Scores(means.mean(axis=1), np.sqrt(between + within), members=means)


class MemberEnsemble(Scorer):
    """K separately trained scorers of one kind, combined by :func:`combine`."""

    def __init__(self, members: Sequence[Scorer]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        kinds = {m.kind for m in members}
        if len(kinds) != 1:
            raise ValueError(f"ensemble members must share one kind, got {sorted(kinds)}")
        self.members = list(members)
        self.kind = members[0].kind

    def score(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> Scores:
        return combine([m.score(prompts, responses) for m in self.members])

    def score_prefixes(self, prompts: Sequence[PromptLike], partial_responses: Sequence[str]) -> Scores:
        return combine([m.score_prefixes(prompts, partial_responses) for m in self.members])
