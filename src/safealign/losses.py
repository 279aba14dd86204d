"""All training losses of safealign in one readable module (OpenRLHF ``models/loss.py`` style).

Two parts: the scorer losses (Bradley-Terry reward, Safe RLHF cost with its sign term, ordinal severity,
prefix consistency), then the policy-optimisation losses and advantage estimators of the RL trainer
(group-relative advantages, clipped surrogate, k3 KL, clipped value loss, GAE).

Conventions: tensor shapes are written next to every argument; ``reduction="mean"`` (default) returns a
scalar averaged over the items that carry weight, ``reduction="none"`` the per-item losses (zeros where
an item has no term). Reward: higher is more helpful. Cost: ``cost > 0`` means unsafe, so 0 is the
decision threshold and ``sigmoid(cost)`` reads as P(unsafe).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "none"]


def _reduce(values: torch.Tensor, weight: torch.Tensor | None, reduction: Reduction) -> torch.Tensor:
    """values [N] -> scalar weighted mean (weight [N] or None = uniform), or ``values * weight`` [N]."""
    if reduction == "none":
        return values if weight is None else values * weight.to(values.dtype)
    if weight is None:
        return values.mean() if values.numel() else values.sum()
    weight = weight.to(values.dtype)
    return (values * weight).sum() / weight.sum().clamp(min=1e-8)


def probit_scale(var: torch.Tensor) -> torch.Tensor:
    """kappa(v) = (1 + pi v / 8)^(-1/2): E[sigmoid(z)] ~= sigmoid(kappa mu) for z ~ N(mu, v) (MacKay 1992)."""
    return torch.rsqrt(1.0 + torch.pi * var / 8.0)


# =====================================================================================================
# Preference-model losses: reward (Bradley-Terry), cost (Safe RLHF), severity (ordinal), prefix scoring
# =====================================================================================================


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | float = 0.0,
                       weight: torch.Tensor | None = None, reduction: Reduction = "mean",
                       var: torch.Tensor | None = None) -> torch.Tensor:
    """Reward-model loss ``-log sigmoid(r(chosen) - r(rejected) - margin)``.

    chosen, rejected: [B] scores of the preferred / dispreferred response of each pair.
    margin: scalar or [B] (Llama-2 style preference strength; 0 = plain Bradley-Terry).
    weight: optional [B] per-pair weights (0 drops a pair, e.g. a row that is not a pair).
    var: optional [B] predicted variance of the score difference (heteroscedastic heads): the logit is
    scaled by probit_scale(var), so a head can lower its confidence on ambiguous pairs instead of
    being pushed to a wrong-signed margin.
    """
    logit = chosen - rejected - margin
    if var is not None:
        logit = logit * probit_scale(var)
    return _reduce(-F.logsigmoid(logit), weight, reduction)


def cost_sign_loss(cost: torch.Tensor, sign: torch.Tensor, weight: torch.Tensor | None = None,
                   reduction: Reduction = "mean", var: torch.Tensor | None = None) -> torch.Tensor:
    """Safe RLHF sign term ``-log sigmoid(s * c(y))``, s = +1 for a response labelled unsafe, -1 for safe.

    cost: [N]; sign: [N] in {+1, -1, 0}, 0 = no label (HH pairs carry none): the item gets no term and
    no weight in the mean. This term is what makes ``cost > 0 <=> unsafe`` hold, i.e. gives the threshold
    0 its meaning; the pairwise term alone is invariant to shifting all costs. var: optional [N] predicted
    variances (heteroscedastic heads), as in :func:`bradley_terry_loss`.
    """
    known = (sign != 0).to(cost.dtype)  # [N]
    if weight is not None:
        known = known * weight.to(cost.dtype)
    logit = cost if var is None else cost * probit_scale(var)
    per_item = -F.logsigmoid(sign.to(cost.dtype) * logit)  # [N]
    if reduction == "mean" and known.sum() == 0:
        return cost.sum() * 0  # keeps the graph; nothing labelled in this batch
    return _reduce(per_item, known, reduction)


def safe_rlhf_cost_loss(cost_safer: torch.Tensor, cost_unsafer: torch.Tensor, sign_safer: torch.Tensor,
                        sign_unsafer: torch.Tensor, sign_weight: float = 1.0, is_pair: torch.Tensor | None = None,
                        weight: torch.Tensor | None = None, reduction: Reduction = "mean",
                        var_safer: torch.Tensor | None = None, var_unsafer: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """The Safe RLHF cost-model loss (Dai et al. 2023; PKU-Alignment/safe-rlhf ``safe_rlhf/values/cost``).

        L_i = -log sigmoid(c(unsafer_i) - c(safer_i))
              - w_s * [ log sigmoid(s(safer_i) c(safer_i)) + log sigmoid(s(unsafer_i) c(unsafer_i)) ]

    cost_safer, cost_unsafer: [B] costs of the safer / less safe response of each row.
    sign_safer, sign_unsafer: [B] in {+1 unsafe, -1 safe, 0 unknown}; an unknown sign drops its term.
    is_pair: [B] bool/float, 0 for rows that are a single labelled response in ``*_safer`` (no pairwise
    term; give its ``sign_unsafer`` 0). weight: [B] row weights (e.g. bootstrap). With all labels present
    and w_s = 1 this is exactly the paper's per-pair loss, averaged over rows. var_safer, var_unsafer:
    optional [B] predicted variances (heteroscedastic heads; see :func:`bradley_terry_loss`).
    """
    pair = torch.ones_like(cost_safer) if is_pair is None else is_pair.to(cost_safer.dtype)  # [B]
    var_pair = None if var_safer is None or var_unsafer is None else var_safer + var_unsafer
    per_row = (pair * bradley_terry_loss(cost_unsafer, cost_safer, reduction="none", var=var_pair)
               + sign_weight * (cost_sign_loss(cost_safer, sign_safer, reduction="none", var=var_safer)
                                + cost_sign_loss(cost_unsafer, sign_unsafer, reduction="none", var=var_unsafer)))
    return _reduce(per_row, weight, reduction)


def ordinal_severity_loss(score: torch.Tensor, thresholds: torch.Tensor, level: torch.Tensor,
                          reduction: Reduction = "mean") -> torch.Tensor:
    """Cumulative-link (ordinal logistic) loss for levels 0 (none) < 1 minor < 2 moderate < 3 severe.

    score: [N] one latent severity per response; thresholds: [K] increasing cut points (K = levels - 1);
    level: [N] long in 0..K, or -1 where unknown (no term). P(level > k) = sigmoid(score - thresholds[k]);
    one binary cross-entropy per cut point, so predicting "minor" for "severe" costs more than
    predicting "moderate".
    """
    known = (level >= 0).to(score.dtype)  # [N]
    logits = score[:, None] - thresholds[None, :]  # [N, K]
    cuts = torch.arange(thresholds.numel(), device=score.device)  # [K]
    targets = (level[:, None] > cuts[None, :]).to(logits.dtype)  # [N, K]
    per_item = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)  # [N]
    if reduction == "mean" and known.sum() == 0:
        return score.sum() * 0
    return _reduce(per_item, known, reduction)


def ordered_thresholds(raw: torch.Tensor) -> torch.Tensor:
    """Free parameters [K] -> strictly increasing cut points: t_0 = raw_0, t_k = t_{k-1} + softplus(raw_k)."""
    return torch.cat([raw[:1], raw[:1] + torch.cumsum(F.softplus(raw[1:]), 0)])


def ordinal_predict(score: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Predicted level [N] (long) from latent scores [N]: how many cut points the score exceeds, i.e. the
    levels k with P(level > k) > 0.5 (the median of the cumulative-link distribution)."""
    return (score[:, None] > thresholds[None, :]).sum(-1)


def prefix_consistency_loss(prefix_score: torch.Tensor, final_score: torch.Tensor,
                            weight: torch.Tensor | None = None, reduction: Reduction = "mean") -> torch.Tensor:
    """Process scoring (CD-FUDGE style): a prefix's score regresses onto the finished response's score.

    prefix_score: [N] scores of truncated responses; final_score: [N] scores of the full responses,
    detached so the full-response estimate is the teacher and is not pulled towards the noisier prefix.
    Huber (smooth L1, beta 1) rather than squared error: reward scores are unbounded, and a squared gap
    between two growing scores fed back into training made the reward model diverge (measured).
    """
    per_item = F.smooth_l1_loss(prefix_score, final_score.detach(), reduction="none", beta=1.0)
    return _reduce(per_item, weight, reduction)


def score_magnitude_penalty(scores: torch.Tensor, weight: torch.Tensor | None = None,
                            reduction: Reduction = "mean") -> torch.Tensor:
    """``scores**2`` [N]: a small multiple keeps pairwise-only scores near 0 (Bradley-Terry is shift- and,
    on separable pairs, scale-unbounded), as in reward-centering regularisers."""
    return _reduce(scores ** 2, weight, reduction)


# ---------------------------------------------------------------------------------------------------------
# Policy-optimisation losses and advantage estimators (RL fine-tuning).
# Shapes: N sequences, T response tokens (right-padded), mask [N, T] is 1 on real response tokens.
# ---------------------------------------------------------------------------------------------------------

def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over mask == 1 (all dims, or along ``dim``); x, mask: [N, T]."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def group_advantages(rewards: torch.Tensor, group: torch.Tensor, scale: Literal["group", "batch", "none"] = "group",
                     eps: float = 1e-6, leave_one_out: bool = False) -> torch.Tensor:
    """Critic-free baseline over the k samples of each prompt (GRPO; RLOO with ``leave_one_out``).

    rewards: [N], group: [N] (prompt id of each sample) -> [N]. A group whose rewards are all equal gets 0.
    ``scale``: divide each group's centred rewards by that group's std (``group``, GRPO), by one std pooled
    over the batch's groups (``batch``: a group whose samples differ more, such as a harmful prompt's
    refusal against its compliance priced by lambda, moves the policy more, as the Lagrangian weighs it), or
    not at all (``none``, Dr. GRPO).
    """
    if scale not in ("group", "batch", "none"):
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    adv = torch.zeros_like(rewards)
    sq, dof = rewards.new_zeros(()), 0
    for g in group.unique():
        m = group == g
        r = rewards[m]
        k = r.numel()
        if leave_one_out and k > 1:
            base = (r.sum() - r) / (k - 1)
        else:
            base = r.mean()
        a = r - base
        if scale == "group" and k > 1:
            a = a / (r.std(unbiased=True) + eps)
        if scale == "batch":
            sq, dof = sq + ((r - r.mean()) ** 2).sum(), dof + k - 1
        adv[m] = a
    if scale == "batch" and dof > 0:
        adv = adv / ((sq / dof).sqrt() + eps)  # pooled within-group std: the one-group case equals "group"
    return adv


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_eps: float) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate, token-mean over the batch (DAPO-style, no per-sequence length bias).

    logp, old_logp: [N, T]; advantages: [N] (broadcast to tokens) or [N, T]; mask: [N, T].
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    ratio = torch.exp(logp - old_logp)  # [N, T]
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -masked_mean(torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean(((ratio - 1.0).abs() > clip_eps).float(), mask)
    return loss, {"clip_frac": float(clip_frac)}


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token unbiased, non-negative KL(pi || ref) estimator exp(q) - q - 1 with q = ref - logp: [N, T]."""
    q = ref_logp - logp
    return torch.exp(q) - q - 1.0


def dpo_loss(logp_chosen: torch.Tensor, logp_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """DPO (Rafailov et al. 2023): -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), batch mean.

    All inputs [B]: summed response log-probs of the chosen / rejected response under the policy and the
    reference. The same rejected text can be chosen elsewhere (a refusal is chosen for a harmful prompt and
    rejected for a benign one), so what is learned is the prompt-conditional preference, not a marginal.
    """
    margin = beta * ((logp_chosen - ref_chosen) - (logp_rejected - ref_rejected))  # [B]
    loss = -torch.nn.functional.logsigmoid(margin).mean()
    with torch.no_grad():
        acc = (margin > 0).float().mean()
    return loss, {"dpo_margin": float(margin.detach().mean()), "dpo_accuracy": float(acc)}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float) -> torch.Tensor:
    """Clipped critic regression (PPO): values, old_values, returns, mask: [N, T]."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded sequences.

    rewards, values, mask: [N, T] (per-token rewards, e.g. the score at the last token plus KL shaping).
    Returns (advantages, returns), both [N, T]; padded positions are 0.
    """
    n, t = rewards.shape
    adv = torch.zeros_like(rewards)
    last = torch.zeros(n, dtype=rewards.dtype, device=rewards.device)
    mask = mask.to(rewards.dtype)
    for i in reversed(range(t)):
        next_v = values[:, i + 1] * mask[:, i + 1] if i + 1 < t else torch.zeros_like(last)
        delta = rewards[:, i] + gamma * next_v - values[:, i]
        last = (delta + gamma * lam * last * (mask[:, i + 1] if i + 1 < t else 0.0)) * mask[:, i]
        adv[:, i] = last
    return adv, (adv + values) * mask
