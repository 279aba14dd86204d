"""Held-out metrics of a reward or cost scorer: accuracies, calibration, uncertainty quality, prefix curve.

Everything is computed from ``Scores`` (mean, std, per-head members), so the same code evaluates a
freshly trained model (features from the training cache) and a scorer loaded from disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from safealign.scoring.base import Scores
from safealign.scoring.calibration import auroc, binary_nll, expected_calibration_error, sigmoid
from safealign.scoring.data import Example, at_fraction

ScoreFn = Callable[[Sequence[list[dict]], Sequence[str]], Scores]


def _score_rows(score_fn: ScoreFn, rows: Sequence[Example]) -> tuple[Scores, Scores | None]:
    """Scores of the a responses [R] and of the b responses of the pair rows (None if there are none)."""
    a = score_fn([r.messages for r in rows], [r.a for r in rows])
    pairs = [r for r in rows if r.b is not None]
    b_all = score_fn([r.messages for r in pairs], [r.b for r in pairs]) if pairs else None
    return a, b_all


def source_metrics(kind: str, rows: Sequence[Example], score_fn: ScoreFn) -> dict[str, float]:
    """Pairwise accuracy (pair rows), sign accuracy (labelled responses) and uncertainty AUROCs for one source."""
    out: dict[str, float] = {"n_rows": len(rows)}
    if not rows:
        return out
    a, b = _score_rows(score_fn, rows)
    is_pair = np.array([r.b is not None for r in rows])
    if b is not None:
        a_pair = a.mean[is_pair]
        diff = (a_pair - b.mean) if kind == "reward" else (b.mean - a_pair)  # > 0: ranked correctly
        out["pairwise_acc"] = float((diff > 0).mean())
        out["n_pairs"] = int(is_pair.sum())
        if a.members is not None and b.members is not None and a.members.shape[1] > 1:
            diff_std = (a.members[is_pair] - b.members).std(axis=1, ddof=1)  # [P] disagreement on the ranking
            out["pairwise_error_auroc_of_std"] = auroc(diff_std, diff <= 0)
            out["pairwise_error_auroc_of_inverse_z"] = auroc(diff_std / (np.abs(diff) + 1e-6), diff <= 0)
    if kind == "cost":
        cost, std, label = _labelled(rows, a, b)
        if label.size:
            out |= sign_metrics(cost, std, label)
    return out


def _labelled(rows: Sequence[Example], a: Scores, b: Scores | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Costs, stds and 0/1 unsafe labels of every response that carries a sign label."""
    cost, std, label = [], [], []
    j = 0
    for i, r in enumerate(rows):
        if r.sign_a:
            cost.append(a.mean[i])
            std.append(a.std[i])
            label.append(r.sign_a > 0)
        if r.b is not None:
            if r.sign_b and b is not None:
                cost.append(b.mean[j])
                std.append(b.std[j])
                label.append(r.sign_b > 0)
            j += 1
    return np.array(cost), np.array(std), np.array(label, dtype=float)


def sign_metrics(cost: np.ndarray, std: np.ndarray, unsafe: np.ndarray, bins: int = 10) -> dict[str, float]:
    """Sign accuracy, ECE / NLL of P(unsafe) = sigmoid(cost), and how well std flags the sign errors."""
    prob = sigmoid(cost)
    wrong = (cost > 0) != (unsafe > 0)
    out = {"sign_acc": float(1 - wrong.mean()), "n_labelled": int(unsafe.size),
           "ece": expected_calibration_error(prob, unsafe, bins), "nll": binary_nll(cost, unsafe),
           "brier": float(np.mean((prob - unsafe) ** 2))}
    if np.any(std > 0):
        # Raw std grows with |cost| (members disagree more on large scores), so it is reported as asked but
        # the usable signal is std relative to the margin: |mean| / std is the z-score of the sign, and a
        # small z is what decoders act on (a bound mean +- k * std that straddles 0).
        out["sign_error_auroc_of_std"] = auroc(std, wrong)
        out["sign_error_auroc_of_inverse_z"] = auroc(std / (np.abs(cost) + 1e-6), wrong)
        rho = stats.spearmanr(std, np.abs(prob - unsafe)).statistic
        out["spearman_std_abs_error"] = float(rho)
    return out


def evaluate_sources(kind: str, sources: Mapping[str, Sequence[Example]], score_fn: ScoreFn,
                     prefix_fractions: Sequence[float] = (0.25, 0.5, 1.0)) -> dict:
    """Per-source metrics, pooled cost-sign metrics over all sources, and the prefix-accuracy curve."""
    out: dict = {"sources": {}}
    pooled: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for name, rows in sources.items():
        if not rows:
            continue
        out["sources"][name] = source_metrics(kind, rows, score_fn)
    if kind == "cost":
        for rows in sources.values():
            if rows and any(r.sign_a or r.sign_b for r in rows):
                a, b = _score_rows(score_fn, rows)
                pooled.append(_labelled(rows, a, b))
        if pooled:
            cost, std, label = (np.concatenate(x) for x in zip(*pooled, strict=True))
            out["all_labelled"] = sign_metrics(cost, std, label)
    curve: dict[str, dict[str, dict[str, float]]] = {}
    for name, rows in sources.items():
        if not rows or not any(r.b is not None or r.sign_a for r in rows):
            continue
        curve[name] = {}
        for f in prefix_fractions:
            m = source_metrics(kind, at_fraction(rows, f), score_fn)
            curve[name][f"{f:g}"] = {k: v for k, v in m.items() if k in ("pairwise_acc", "sign_acc")}
    out["prefix_curve"] = curve
    return out
