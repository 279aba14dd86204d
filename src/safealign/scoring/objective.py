"""Rows -> tensors -> loss: the one objective shared by the frozen-feature and the fine-tuning loops.

Every row is a pair (a preferred over b) or a single labelled response; each of the K heads sees its
own bootstrap weights, so heads trained on the same features still disagree where the data is thin,
which is what makes the ensemble std informative.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from safealign.losses import (
    bradley_terry_loss,
    ordinal_severity_loss,
    prefix_consistency_loss,
    safe_rlhf_cost_loss,
    score_magnitude_penalty,
)
from safealign.scoring.backbones import render_dialogue
from safealign.scoring.data import Example


def text_key(messages: Sequence[dict], response: str) -> tuple[str, str]:
    """Hashable identity of one (prompt, response) input."""
    return render_dialogue(messages), response


class TextTable:
    """The distinct (prompt, response) inputs of a set of rows; rows refer to them by index."""

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.prompts: list[list[dict]] = []
        self.responses: list[str] = []

    def add(self, messages: Sequence[dict], response: str) -> int:
        key = text_key(messages, response)
        if key not in self.index:
            self.index[key] = len(self.responses)
            self.prompts.append(list(messages))
            self.responses.append(response)
        return self.index[key]

    def keys(self) -> list[tuple[str, str]]:
        return list(self.index)

    def __len__(self) -> int:
        return len(self.responses)


@dataclasses.dataclass
class RowTensors:
    """Index form of rows into a table of unique texts (``texts``); -1 marks 'absent'. All shapes [R]."""

    a: torch.Tensor  # long: text index of response a
    b: torch.Tensor  # long: text index of response b, -1 for single responses
    sign_a: torch.Tensor  # float: +1 unsafe, -1 safe, 0 unknown
    sign_b: torch.Tensor
    sev_a: torch.Tensor  # long: severity level, -1 unknown
    sev_b: torch.Tensor
    full_a: torch.Tensor  # long: text index of the untruncated a (prefix rows), else -1
    full_b: torch.Tensor
    boot: torch.Tensor  # [R, K] float bootstrap weights per head

    def __len__(self) -> int:
        return int(self.a.numel())

    def select(self, idx: torch.Tensor) -> RowTensors:
        return RowTensors(**{f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)})


def index_rows(rows: Sequence[Example], table: TextTable, heads: int, bootstrap: bool, seed: int) -> RowTensors:
    """Register every text of ``rows`` in ``table`` and return the index tensors."""

    def idx(messages: Sequence[dict], text: str | None) -> int:
        return -1 if text is None else table.add(messages, text)

    cols: dict[str, list] = {k: [] for k in ("a", "b", "sign_a", "sign_b", "sev_a", "sev_b", "full_a", "full_b")}
    for r in rows:
        cols["a"].append(idx(r.messages, r.a))
        cols["b"].append(idx(r.messages, r.b))
        cols["sign_a"].append(r.sign_a)
        cols["sign_b"].append(r.sign_b if r.b is not None else 0)
        cols["sev_a"].append(r.severity_a)
        cols["sev_b"].append(r.severity_b if r.b is not None else -1)
        cols["full_a"].append(idx(r.messages, r.full_a) if r.fraction < 1 else -1)
        cols["full_b"].append(idx(r.messages, r.full_b) if r.fraction < 1 and r.b is not None else -1)
    gen = torch.Generator().manual_seed(seed)
    n = len(rows)
    boot = (torch.poisson(torch.ones(n, heads), generator=gen) if bootstrap and heads > 1
            else torch.ones(n, heads))  # [R, K]
    as_long = {k: torch.tensor(v, dtype=torch.long) for k, v in cols.items() if not k.startswith("sign")}
    as_float = {k: torch.tensor(v, dtype=torch.float32) for k, v in cols.items() if k.startswith("sign")}
    return RowTensors(**as_long, **as_float, boot=boot)


@dataclasses.dataclass
class LossWeights:
    sign: float = 1.0
    prefix: float = 0.5
    severity: float = 1.0
    magnitude: float = 1e-3


def row_loss(kind: str, score_of: dict[str, torch.Tensor], rows: RowTensors, w: LossWeights,
             severity_of: torch.Tensor | None = None, thresholds: torch.Tensor | None = None) -> torch.Tensor:
    """The training objective for one batch of rows: a per-row, per-head loss averaged with bootstrap weights.

    score_of: {"a", "b", "full_a", "full_b"} -> [R, K] head scores (entries of absent texts are ignored),
    plus "a_var", "b_var" [R, K] for heteroscedastic heads.
    reward: Bradley-Terry on a > b. cost: the Safe RLHF loss (b less safe than a, plus sign terms; single
    responses contribute their sign term only). Prefix rows add the consistency term towards the detached
    full-response scores; ``severity_of`` [2R] (latent severity of the a then the b responses) adds the
    ordinal loss where levels are known.
    """
    a, b = score_of["a"], score_of["b"]  # [R, K]
    k = a.shape[1]
    is_pair = (rows.b >= 0).float()[:, None].expand(-1, k)  # [R, K]
    flat = lambda t: t.reshape(-1)  # noqa: E731  [R, K] -> [R * K]
    col = lambda t: flat(t[:, None].expand(-1, k))  # noqa: E731  [R] -> [R * K]
    va, vb = score_of.get("a_var"), score_of.get("b_var")  # [R, K] or None (heteroscedastic heads only)
    va, vb = (None, None) if va is None or vb is None else (flat(va), flat(vb))
    if kind == "reward":
        per = bradley_terry_loss(flat(a), flat(b), weight=flat(is_pair), reduction="none",
                                 var=None if va is None else va + vb)
    else:
        per = safe_rlhf_cost_loss(flat(a), flat(b), col(rows.sign_a), col(rows.sign_b), w.sign,
                                  is_pair=flat(is_pair), reduction="none", var_safer=va, var_unsafer=vb)  # [R * K]
    if w.prefix > 0 and "full_a" in score_of:
        has_a = col((rows.full_a >= 0).float())
        has_b = col((rows.full_b >= 0).float())
        per = per + w.prefix * (prefix_consistency_loss(flat(a), flat(score_of["full_a"]), has_a, "none")
                                + prefix_consistency_loss(flat(b), flat(score_of["full_b"]), has_b, "none"))
    if w.magnitude > 0:
        per = per + w.magnitude * (score_magnitude_penalty(flat(a), reduction="none")
                                   + score_magnitude_penalty(flat(b), flat(is_pair), "none"))
    boot = flat(rows.boot)  # [R * K]
    loss = (per * boot).sum() / boot.sum().clamp(min=1e-8)
    if severity_of is not None and thresholds is not None and w.severity > 0:
        levels = torch.cat([rows.sev_a, torch.where(rows.b >= 0, rows.sev_b, -1)])  # [2R]
        loss = loss + w.severity * ordinal_severity_loss(severity_of, thresholds, levels)
    return loss


@torch.no_grad()
def row_metrics(kind: str, a: torch.Tensor, b: torch.Tensor, rows: RowTensors) -> dict[str, float]:
    """Accuracies of the ensemble mean. a, b: [R] scores; pairwise and (cost) sign accuracy."""
    out: dict[str, float] = {}
    pair = rows.b >= 0
    if pair.any():
        better = a[pair] > b[pair] if kind == "reward" else b[pair] > a[pair]
        out["pairwise_acc"] = float(better.float().mean())
        out["n_pairs"] = int(pair.sum())
    if kind == "cost":
        scores = torch.cat([a, b])
        signs = torch.cat([rows.sign_a, rows.sign_b])
        labelled = signs != 0
        if labelled.any():
            out["sign_acc"] = float(((scores[labelled] > 0) == (signs[labelled] > 0)).float().mean())
            out["n_labelled"] = int(labelled.sum())
    return out
