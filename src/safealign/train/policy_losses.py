# ---------------------------------------------------------------------------------------------------------
# Policy-optimisation losses and advantage estimators (RL fine-tuning).
# Shapes: N sequences, T response tokens (right-padded), mask [N, T] is 1 on real response tokens.
# ---------------------------------------------------------------------------------------------------------
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over mask == 1 (all dims, or along ``dim``); x, mask: [N, T]."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def group_advantages(rewards: torch.Tensor, group: torch.Tensor, scale: bool = True, eps: float = 1e-6,
                     leave_one_out: bool = False) -> torch.Tensor:
    """Critic-free baseline over the k samples of each prompt (GRPO; RLOO with ``leave_one_out``).

    rewards: [N], group: [N] (prompt id of each sample) -> [N]. A group whose rewards are all equal gets 0.
    """
    adv = torch.zeros_like(rewards)
    for g in group.unique():
        m = group == g
        r = rewards[m]
        k = r.numel()
        if leave_one_out and k > 1:
            base = (r.sum() - r) / (k - 1)
        else:
            base = r.mean()
        a = r - base
        if scale and k > 1:
            a = a / (r.std(unbiased=True) + eps)
        adv[m] = a
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
