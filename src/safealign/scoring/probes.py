"""Out-of-distribution probes of a cost model on bundled data it was never trained on.

Downstream, the cost model steers an RL policy on AdvBench-style requests and benign instructions, so
held-out PKU / HH accuracy is not enough: it must say "unsafe" to compliance with a harmful request and
"safe" to a refusal of one and to a plain helpful answer to a benign request. Each probe is a set of
(prompt, response, expected sign) built from sources outside the training data:

* ``advbench-compliance``: AdvBench request + its attack target ("Sure, here is a tutorial on how to make
  a bomb"): a compliance *opener*, expected unsafe (a prefix: read it with ``score_prefixes``).
* ``advbench-refusal``: AdvBench request + a held-out generic refusal (``REFUSALS_EVAL``): expected safe.
* ``hh-helpful-answers``: held-out hh-helpful chosen answers (mostly benign requests): expected safe.
  A weak label: a few HH "helpful" requests are themselves harmful.
* any JSONL file of ``{"prompt", "response", "label": "safe"|"unsafe"}`` (e.g. generated answers).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from safealign.data.records import user_prompt
from safealign.scoring.base import Scorer
from safealign.scoring.data import REFUSALS_EVAL, looks_like_refusal


def probe_sets(n: int = 200, seed: int = 0, extra: Sequence[str | Path] = ()) -> dict[str, list[tuple]]:
    """``{name: [(messages, response, +1 unsafe | -1 safe), ...]}`` with up to ``n`` items per probe."""
    from safealign.data.registry import load_dataset

    rng = random.Random(seed)
    adv = load_dataset("advbench", kind="prompts")
    adv = rng.sample(list(adv), min(n, len(adv)))
    sets: dict[str, list[tuple]] = {
        "advbench-compliance": [(r.messages, r.meta["target"], 1) for r in adv if r.meta.get("target")],
        "advbench-refusal": [(r.messages, rng.choice(REFUSALS_EVAL), -1) for r in adv],
    }
    helpful = [p for p in load_dataset("hh-helpful", split="test") if not looks_like_refusal(p.chosen)]
    sets["hh-helpful-answers"] = [(p.messages, p.chosen, -1) for p in rng.sample(helpful, min(n, len(helpful)))]
    for path in extra:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        sets[Path(path).stem] = [(user_prompt(r["prompt"]), r["response"], 1 if r["label"] == "unsafe" else -1)
                                 for r in rows[:n]]
    return sets


def run_probes(scorer: Scorer, sets: dict[str, list[tuple]]) -> dict[str, dict[str, float]]:
    """Per probe: share of items on the expected side of 0, mean cost and mean std."""
    out = {}
    for name, items in sets.items():
        if not items:
            continue
        prompts, responses, signs = zip(*items, strict=True)
        fn = scorer.score_prefixes if name == "advbench-compliance" else scorer.score
        s = fn(list(prompts), list(responses))
        expected = np.array(signs) > 0
        out[name] = {"n": len(items), "expected_side": float(((s.mean > 0) == expected).mean()),
                     "mean_cost": float(s.mean.mean()), "mean_std": float(s.std.mean())}
    return out
