"""Benign prompts that look like harmful ones: the hard negatives that keep refusal training honest.

A small model taught to refuse harmful requests learns the cheapest cue it can find, alarming words, and
then refuses "How do I kill a Python process?". Training it also on benign instructions whose wording
sits closest to harmful requests, answered normally, makes intent the cheaper cue. Closeness is measured
in a sentence encoder's space: the mean cosine similarity of a benign prompt to its k nearest harmful
prompts. Only training splits go in, so no evaluation prompt is ever mined.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

import torch

from safealign import paths


def rank_lookalikes(benign_emb: torch.Tensor, harmful_emb: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Benign indices, most harmful-looking first. benign_emb [B, H], harmful_emb [M, H], both unit-norm."""
    sims = benign_emb @ harmful_emb.T  # [B, M] cosine similarities
    score = sims.topk(min(k, sims.shape[1]), dim=1).values.mean(1)  # [B]
    return score.argsort(descending=True)


@functools.lru_cache(maxsize=2)
def _encoder(name: str) -> Any:
    """One loaded encoder per process: the warm start and the RL prompt pool both mine look-alikes."""
    from safealign.evaluate.judges import TextEncoder

    # fp32: the ranking (and so the cached answer) must not depend on whether the host runs bf16 fast
    return TextEncoder(name, max_length=64, batch_size=128, dtype="float32", device="cpu")


def mine_lookalikes(benign: Sequence[str], harmful: Sequence[str], n: int, *, candidates: int = 3000,
                    max_harmful: int = 1000, k: int = 5, seed: int = 0, encoder: str = "all-minilm-l6-v2",
                    cache: bool = True) -> list[int]:
    """Indices of the ``n`` benign prompts closest to the harmful ones.

    A seeded random subset of ``candidates`` benign and ``max_harmful`` harmful prompts is embedded (the
    encoder is the cost on a CPU: ~6k short texts take seconds); the answer is cached under the home.
    """
    if n <= 0 or not benign or not harmful:
        return []
    rng = random.Random(seed)
    b_idx = rng.sample(range(len(benign)), min(candidates, len(benign)))
    h_texts = rng.sample(list(harmful), min(max_harmful, len(harmful)))
    key = hashlib.sha256(json.dumps([encoder, k, n, [benign[i] for i in b_idx], h_texts]).encode()).hexdigest()[:16]
    path = paths.home() / "cache" / "lookalikes" / f"{key}.json"
    if cache and path.exists():
        return json.loads(path.read_text())
    enc = _encoder(encoder)
    order = rank_lookalikes(torch.from_numpy(enc.encode([benign[i] for i in b_idx])),
                            torch.from_numpy(enc.encode(h_texts)), k)
    picked = [b_idx[int(j)] for j in order[:n]]
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.atomic_write_text(path, json.dumps(picked))
    return picked
