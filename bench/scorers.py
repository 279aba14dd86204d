"""Scoring throughput (pairs/s) of reward / cost scorers on MiniLM and SmolLM2 trunks.

Throughput does not depend on the heads' weights, so untrained heads on each trunk are timed on real
held-out (prompt, response) pairs of hh-helpful; pass ``--scorer DIR`` to time a trained checkpoint too.

    SAFEALIGN_HOME=/tmp/sa_home .venv/bin/python bench/scorers.py --pairs 256 --threads 2

Prints one row per trunk: pairs/s for full responses (``score``) and for 25% prefixes
(``score_prefixes``), the mean tokens per pair, and the setup (device, dtype, threads).
"""

from __future__ import annotations

import argparse
import time

import torch

from safealign import hardware
from safealign.data.registry import load_dataset
from safealign.scoring.backbones import Backbone, BackboneConfig
from safealign.scoring.data import truncate_words
from safealign.scoring.model import ScoreModel, ScorerMeta
from safealign.scoring.scorer import ModelScorer

TRUNKS = {
    "minilm-separate-l4": dict(name="all-minilm-l6-v2", pairing="separate", pool_layers=[4, 3]),
    "minilm-cross-l6": dict(name="all-minilm-l6-v2", pairing="cross", pool_layers=[-1, -3]),
    "smollm2-last-token": dict(name="smollm2-135m-instruct", pool_layers=[-1]),
}


def untrained(trunk: dict, heads: int, device: str) -> ModelScorer:
    cfg = BackboneConfig(**trunk)
    bb = Backbone.from_pretrained(cfg.name, cfg)
    meta = ScorerMeta(kind="cost", arch=bb.arch, base_model=cfg.name, num_heads=heads, head_hidden=256,
                      feature_dim=bb.feature_dim, backbone=cfg.to_dict())
    return ModelScorer(ScoreModel(bb, meta), device=device)


def time_scorer(scorer: ModelScorer, prompts: list, responses: list[str], repeats: int) -> float:
    scorer.score(prompts[:8], responses[:8])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        scorer.score(prompts, responses)
        best = min(best, time.perf_counter() - start)
    return len(prompts) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=256, help="held-out hh-helpful pairs to score")
    ap.add_argument("--trunks", default=",".join(TRUNKS), help=f"comma list of: {', '.join(TRUNKS)}")
    ap.add_argument("--scorer", action="append", default=[], help="also time this trained scorer directory")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats; the best is reported")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or hardware.default_device()
    rows = load_dataset("hh-helpful", split="test")[: args.pairs]
    prompts = [r.messages for r in rows]
    responses = [r.chosen for r in rows]
    prefixes = [truncate_words(r, 0.25) for r in responses]
    print(f"# {len(rows)} pairs from hh-helpful (test); {hardware.describe()}; batch {args.batch_size}")
    print(f"{'scorer':34s} {'pairs/s':>9s} {'prefix pairs/s':>15s} {'tokens/pair':>12s}")
    targets = [(n, lambda n=n: untrained(TRUNKS[n], args.heads, device)) for n in args.trunks.split(",") if n]
    targets += [(path, lambda p=path: ModelScorer.load(p, device=device)) for path in args.scorer]
    for name, make in targets:
        scorer = make()
        scorer.batch_size = args.batch_size
        bb = scorer.model.backbone
        toks = sum(len(bb.encode_pair(p, r)[0]) for p, r in zip(prompts, responses, strict=True)) / len(rows)
        full = time_scorer(scorer, prompts, responses, args.repeats)
        pre = time_scorer(scorer, prompts, prefixes, args.repeats)
        print(f"{name:34s} {full:9.1f} {pre:15.1f} {toks:12.0f}", flush=True)


if __name__ == "__main__":
    main()
