"""Benign prompts that look like harmful ones: the hard negatives that keep refusal training honest.

A small model taught to refuse harmful requests learns the cheapest cue it can find, alarming words, and
then refuses "How do I kill a Python process?". Training it also on benign instructions whose wording
sits closest to harmful requests, answered normally, makes intent the cheaper cue. Closeness is measured
in a sentence encoder's space: the mean cosine similarity of a benign prompt to its k nearest harmful
prompts (``embedding``). The encoder measures topic and format more than the words a small policy keys on:
the Alpaca instructions it ranks first are mostly "Generate a few funny jokes"-style requests. ``keywords``
ranks benign prompts by the harmful set's most distinctive words instead (log-odds of document frequency,
harmful against benign), which finds idioms and homonyms ("steal one's thunder", "panic attack", "ethical
hacking"); ``both`` alternates the two rankings. Only training splits go in, so no evaluation prompt is
ever mined.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

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


LookalikeMethod = Literal["embedding", "keywords", "both"]
LOOKALIKE_METHODS = ("embedding", "keywords", "both")
_WORD = re.compile(r"[a-z]+")


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3}


def distinctive_words(benign: Sequence[str], harmful: Sequence[str], min_count: int = 3,
                      min_log_odds: float = 2.0) -> dict[str, float]:
    """Words of at least ``min_count`` harmful prompts whose document frequency there is at least
    e^min_log_odds times that in the benign prompts (add-1/2 smoothed): word -> log-odds."""
    in_harmful = Counter(w for t in harmful for w in _words(t))
    in_benign = Counter(w for t in benign for w in _words(t))
    odds = {w: math.log((c + 0.5) / len(harmful)) - math.log((in_benign[w] + 0.5) / len(benign))
            for w, c in in_harmful.items() if c >= min_count}
    return {w: v for w, v in odds.items() if v >= min_log_odds}


def rank_by_keywords(benign: Sequence[str], harmful: Sequence[str], seed: int = 0) -> list[int]:
    """Benign indices that contain a distinctive harmful word, the most distinctive first (ties: seeded order)."""
    words = distinctive_words(benign, harmful)
    rng = random.Random(seed)
    scored = [(max(words[w] for w in hits), rng.random(), i)
              for i, t in enumerate(benign) if (hits := _words(t) & words.keys())]
    return [i for _, _, i in sorted(scored, reverse=True)]


def mine_lookalikes(benign: Sequence[str], harmful: Sequence[str], n: int, *, candidates: int = 3000,
                    max_harmful: int = 1000, k: int = 5, seed: int = 0, encoder: str = "all-minilm-l6-v2",
                    cache: bool = True, method: LookalikeMethod = "embedding") -> list[int]:
    """Indices of the ``n`` benign prompts closest to the harmful ones (``method``: see the module docstring).

    ``embedding``: a seeded random subset of ``candidates`` benign and ``max_harmful`` harmful prompts is
    embedded (the encoder is the cost on a CPU: ~6k short texts take seconds); the answer is cached under the
    home. ``keywords`` reads every prompt (word counts take well under a second). ``both``: the two rankings
    alternated, without repeats.
    """
    if n <= 0 or not benign or not harmful:
        return []
    if method not in LOOKALIKE_METHODS:
        raise ValueError(f"unknown look-alike method '{method}'; use one of {', '.join(LOOKALIKE_METHODS)}")
    if method != "embedding":
        by_words = rank_by_keywords(benign, harmful, seed)
        if method == "keywords":
            return by_words[:n]
        by_embedding = mine_lookalikes(benign, harmful, n, candidates=candidates, max_harmful=max_harmful, k=k,
                                       seed=seed, encoder=encoder, cache=cache)
        picked: dict[int, None] = {}
        for pair in zip(by_words + [-1] * max(0, n - len(by_words)), by_embedding, strict=False):
            picked.update((i, None) for i in pair if i >= 0)
        return list(picked)[:n]
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
