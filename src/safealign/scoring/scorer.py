"""The trained-model :class:`Scorer`: batched scoring on CPU or GPU with ensemble mean / std per input."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from safealign import hardware
from safealign.scoring.base import PromptLike, Scorer, Scores, ScoringError
from safealign.scoring.model import ScoreModel


class ModelScorer(Scorer):
    """A :class:`ScoreModel` behind the Scorer API.

    ``score`` returns the mean and standard deviation over the K heads of the normalised scores (see
    ``scorer_config.json``); ``score_prefixes`` uses the same heads, which were trained on truncated
    responses carrying the label of the full one when ``meta.prefix_trained`` is true.
    """

    def __init__(self, model: ScoreModel, *, device: str | None = None, batch_size: int = 32) -> None:
        self.device = device or hardware.default_device()
        self.model = model.to(self.device).eval()
        self.kind = model.meta.kind  # type: ignore[assignment]
        self.batch_size = batch_size
        self.meta = model.meta

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None, batch_size: int = 32) -> ModelScorer:
        device = device or hardware.default_device()
        return cls(ScoreModel.load(path, device=device), device=device, batch_size=batch_size)

    def save(self, path: str | Path) -> Path:
        return self.model.save(path)

    # ------------------------------------------------------------------ scoring
    def features(self, prompts: Sequence[PromptLike], responses: Sequence[str], progress: bool = False) -> torch.Tensor:
        """Trunk features [N, D] on CPU (float32)."""
        return self.model.backbone.featurize(prompts, responses, batch_size=self.batch_size, device=self.device,
                                             progress=progress)

    def score(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> Scores:
        """Mean and std over the heads (see :meth:`ScoreModel.publish`); members = per-head scores [N, K]."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not len(prompts):
            return Scores(np.zeros(0), np.zeros(0), members=np.zeros((0, self.meta.num_heads)))
        try:
            feats = self.features(prompts, responses).to(self.device)
            mean, std, members = self.model.publish(feats)
        except Exception as err:  # fail closed: callers treat a scoring error as "unsafe"
            raise ScoringError(f"{self.kind} scorer failed: {type(err).__name__}: {err}") from err
        if not (np.isfinite(mean).all() and np.isfinite(std).all()):
            raise ScoringError(f"{self.kind} scorer produced non-finite scores")
        return Scores(mean, std, members=members)

    def score_prefixes(self, prompts: Sequence[PromptLike], partial_responses: Sequence[str]) -> Scores:
        """Predicted score of the finished response from a partial one (same heads; see class docstring)."""
        return self.score(prompts, partial_responses)

    def severity(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> np.ndarray:
        """Predicted severity level per response, [N] int in 0 (none) .. 3 (severe); needs a severity head."""
        from safealign.losses import ordinal_predict

        if self.model.severity is None:
            raise ValueError("this scorer has no severity head (train it on data with severity levels)")
        feats = self.features(prompts, responses).to(self.device)
        with torch.inference_mode():
            latent = self.model.severity(feats)
            return ordinal_predict(latent, self.model.severity.thresholds()).cpu().numpy()
