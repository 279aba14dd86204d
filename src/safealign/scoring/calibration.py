"""Calibration and uncertainty metrics: ECE, AUROC, temperature scaling (numpy / scipy, no sklearn)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize, stats


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))  # overflow-free logistic


def expected_calibration_error(prob: np.ndarray, label: np.ndarray, bins: int = 10) -> float:
    """ECE with equal-width bins: sum_b |B|/N * |mean(label in B) - mean(prob in B)|.

    prob: [N] predicted P(label = 1); label: [N] in {0, 1}.
    """
    prob, label = np.asarray(prob, dtype=np.float64), np.asarray(label, dtype=np.float64)
    if prob.size == 0:
        return float("nan")
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(label[sel].mean() - prob[sel].mean())
    return float(ece)


def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for binary ``label`` (Mann-Whitney U with tie-averaged ranks).

    Returns NaN when one class is absent (AUROC is undefined, and 0.5 would wrongly look like chance).
    """
    score, label = np.asarray(score, dtype=np.float64), np.asarray(label).astype(bool)
    n_pos, n_neg = int(label.sum()), int((~label).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[label].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def binary_nll(logit: np.ndarray, label: np.ndarray) -> float:
    """Mean negative log-likelihood of labels [N] in {0, 1} under sigmoid(logit)."""
    logit, label = np.asarray(logit, dtype=np.float64), np.asarray(label, dtype=np.float64)
    return float(np.mean(np.logaddexp(0.0, logit) - label * logit))


def fit_scale(logit_of: Callable[[float], np.ndarray], label: np.ndarray,
              bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the NLL of sigmoid(logit_of(T)) on held-out labels [N] in {0, 1}.

    ``logit_of(T)`` gives the model's logits at temperature T (plain ``logit / T``, or a model whose
    published score depends on T non-linearly). Returns 1.0 without labels of both classes.
    """
    label = np.asarray(label, dtype=np.float64)
    if label.size == 0 or label.min() == label.max():
        return 1.0
    res = optimize.minimize_scalar(lambda log_t: binary_nll(logit_of(float(np.exp(log_t))), label),
                                   bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded")
    return float(np.exp(res.x))


def fit_temperature(logit: np.ndarray, label: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature T minimising the NLL of sigmoid(logit / T) on held-out labels (Guo et al. 2017).

    Only a scale: it keeps the sign (so the cost threshold 0 and every accuracy stay the same) and fixes
    over- or under-confidence. Returns 1.0 when there are no labels of both classes.
    """
    logit = np.asarray(logit, dtype=np.float64)
    return fit_scale(lambda t: logit / t, label, bounds)
