"""log p(target token) from logits without materialising the full fp32 log-softmax.

Why: every policy pass of the RL step and of the DPO warm start needs only the log-probability of the one
token that was sampled, out of a 49k vocabulary. ``log_softmax(logits.float()).gather(...)`` writes two
[N, T, V] fp32 tensors (the upcast and the log-softmax) and its backward two more, which on a 2-core CPU
is memory traffic, not arithmetic: at N x T = 512 rows it cost about as much as a quarter of the model's
backward (docs/training.md). Here the rows go through in cache-sized chunks: forward keeps only the
per-row log-normaliser [N, T], backward rebuilds the softmax chunk by chunk and writes the logits'
gradient once, in the logits' dtype. Same math: d logp_t / d z = onehot(target) - softmax(z).
"""

from __future__ import annotations

from typing import Any

import torch

# rows of one chunk: 16 x 49k fp32 = 3 MB, about what a core's caches hold
CHUNK_ROWS = 16


class _TokenLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
        # logits [R, V] (any float dtype), targets [R] long -> log p(target) [R] fp32, entropy [R] fp32 (or [0])
        rows = logits.shape[0]
        lse = torch.empty(rows, dtype=torch.float32, device=logits.device)  # [R]
        entropy = torch.empty(rows if with_entropy else 0, dtype=torch.float32, device=logits.device)
        for s in range(0, rows, CHUNK_ROWS):
            e = s + CHUNK_ROWS
            x = logits[s:e].float()  # [c, V]
            lse[s:e] = torch.logsumexp(x, -1)
            if with_entropy:  # from the same fp32 chunk and normaliser, not a second pass over the logits
                logp = x - lse[s:e, None]
                entropy[s:e] = -(logp.exp() * logp).sum(-1)
        picked = logits.gather(1, targets[:, None]).squeeze(1).float()  # [R]
        ctx.save_for_backward(logits, targets, lse)
        ctx.mark_non_differentiable(entropy)
        return picked - lse, entropy

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor, _grad_entropy: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        g = grad_out.float()  # [R]
        grad = torch.empty_like(logits)  # [R, V] in the logits' dtype
        for s in range(0, logits.shape[0], CHUNK_ROWS):
            e = s + CHUNK_ROWS
            # out of place first: for fp32 logits .float() is the saved tensor itself
            p = (logits[s:e].float() - lse[s:e, None]).exp_()  # softmax of the chunk [c, V] fp32
            p.mul_(-g[s:e, None]).scatter_add_(1, targets[s:e, None], g[s:e, None])
            grad[s:e] = p
        return grad, None, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, with_entropy: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logits [..., V], targets [...] (token ids) -> log p(target) [...] in fp32, differentiable in logits, and
    (``with_entropy``) the entropy of softmax(logits) [...] in fp32, not differentiable; else None."""
    shape = targets.shape
    flat = logits.reshape(-1, logits.shape[-1])
    logp, entropy = _TokenLogProbs.apply(flat, targets.reshape(-1).to(flat.device), with_entropy)
    return logp.view(shape), entropy.view(shape) if with_entropy else None
