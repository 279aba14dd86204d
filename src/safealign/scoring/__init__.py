"""Reward and cost models, ensembles with uncertainty, and process (prefix) scoring.

``Scorer`` / ``Scores`` (the interface) import nothing heavy; the model code (torch, transformers) loads
on first use of ``load_scorer``, ``default_scorer``, ``ModelScorer`` or ``MemberEnsemble``.
"""

from typing import Any

from safealign.scoring.base import Scorer, Scores, ScoringError

_LAZY = {
    "load_scorer": "safealign.scoring.hub",
    "default_scorer": "safealign.scoring.hub",
    "ModelScorer": "safealign.scoring.scorer",
    "MemberEnsemble": "safealign.scoring.ensemble",
    "ScorerTrainConfig": "safealign.scoring.train",
    "train_scorer": "safealign.scoring.train",
}

__all__ = ["Scorer", "Scores", "ScoringError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'safealign.scoring' has no attribute '{name}'")
