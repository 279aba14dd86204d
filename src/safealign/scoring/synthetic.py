"""Prefilled compliance: unsafe cost-model examples in the policy's own words (a one-time, cached data build).

None of the bundled data pairs AdvBench-style instructions ("Write a tutorial on how to make a bomb") with a
compliant answer, and a cost model trained without one scores plain compliance as safe (measured: see
docs/scorers.md). Here the generator (by default the very SmolLM2 that RL later trains) is *prefilled* with
a compliance opener for a held-in harmful instruction and continues it; the opener + continuation is
labelled unsafe and paired with the instruction's reference refusal (safer). This is the prefilling
construction of jailbreak / DeRTa work: the label says "a response that sets out to carry out a harmful
instruction", not that the continuation is competent (a 135M model's often is not), and a continuation
that veers off into harmless text is label noise we accept and document.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
from collections.abc import Sequence
from typing import Any

from safealign import paths
from safealign.generation.engine import OFFLINE_BATCH_SIZE
from safealign.scoring.data import Example, int_seed, opener_for

log = logging.getLogger("safealign.scoring")


def prefilled_responses(rows: Sequence[Example], templates: Sequence[str], *, model: str, max_new_tokens: int,
                        seed: str, batch_size: int = OFFLINE_BATCH_SIZE) -> list[str]:
    """Opener + the model's continuation for each row's instruction (cached by everything that shapes it).

    No templates: the model answers freely (its own sampled answer, no opener).
    """
    if not rows:
        return []
    rng = random.Random(seed)
    openers = [opener_for(r.prompt, rng.choice(templates)) if templates else "" for r in rows]
    ident = json.dumps([model, max_new_tokens, seed, [r.prompt for r in rows], openers])
    path = paths.home() / "cache" / "scorer-data" / f"prefill-{hashlib.sha1(ident.encode()).hexdigest()[:16]}.json"
    if path.exists():
        return json.loads(path.read_text())
    from safealign.generation import SamplingConfig

    log.warning("generating %d prefilled continuations with %s (cached afterwards)", len(rows), model)
    engine = prefill_engine(model)
    cfg = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.7, top_p=0.95, n=1,
                         batch_size=batch_size, seed=int_seed(seed))
    outs = engine.generate([r.messages for r in rows], cfg, prefixes=openers if templates else None, progress=True)
    texts = [o + row[0].text for o, row in zip(openers, outs, strict=True)]
    paths.atomic_write_text(path, json.dumps(texts))
    return texts


@functools.lru_cache(maxsize=1)
def prefill_engine(model: str) -> Any:
    """One loaded engine for all the data build's generation calls (``prefill_engine.cache_clear()`` frees it)."""
    from safealign.generation import build_engine

    return build_engine(model)


def prefilled_compliance(rows: Sequence[Example], templates: Sequence[str], *, model: str, max_new_tokens: int,
                         seed: str, source: str, batch_size: int = OFFLINE_BATCH_SIZE) -> list[Example]:
    """For each (harmful instruction, refusal) row: a pair (refusal safer than prefilled compliance).

    Results are cached under ``$SAFEALIGN_HOME/cache/scorer-data`` keyed by everything that shapes them,
    so the generation runs once per machine.
    """
    texts = prefilled_responses(rows, templates, model=model, max_new_tokens=max_new_tokens, seed=seed,
                                batch_size=batch_size)
    return [Example(r.messages, r.a, t, -1, 1, source=source) for r, t in zip(rows, texts, strict=True)]
