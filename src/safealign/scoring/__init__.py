"""Reward and cost models, ensembles with uncertainty, and process (prefix) scoring."""

from safealign.scoring.base import Scorer, Scores, ScoringError

__all__ = ["Scorer", "Scores", "ScoringError"]
