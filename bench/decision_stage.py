"""Experiment (session 23): a refusal-decision stage before the DPO warm start. A script, not a package option.

Why: the aligned policies rank harmful prompts against XSTest's safe ones worse than a linear probe on the
base model's own hidden states does (bench/refusal_probe.py), and the ranking is set by the warm start, whose
64 DPO steps see about 250 pairs. This stage first trains the same LoRA adapter on many more labelled prompts,
cheaply (no answers are generated or scored; one forward and backward over the prompt plus a short opener):
a binary cross-entropy on p = P(answer opens with ``--opener`` | prompt), pushed to 1 on harmful prompts
(Safety-Tuned LLaMAs' and AdvBench's training splits) and to 0 on benign ones (Alpaca's training split, the
built-in ``benign-contrasts``, AlpacaEval's training split). The DPO warm start and the RL then run as the
given ``safealign align`` arguments say. The stage's settings join the warm-start cache key, so its warm
starts never mix with the package's.

    python bench/decision_stage.py --per-side 1000 -- align --config configs/demo.yaml --seed 0 \\
        --warmstart.seed 0 --out_dir runs/decision/align
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

import safealign.train.sft as sft
from safealign.data.registry import load_dataset
from safealign.generation.engine import render_prompt
from safealign.models.adapters import autocast_forward


def decision_prompts(per_side: int, seed: int) -> list[tuple[list[dict], float]]:
    """(messages, 1 = harmful) in a seeded order: ``per_side`` harmful and ``per_side`` benign prompts."""
    rng = random.Random(f"{seed}:decision")
    harmful = [r.messages for r in load_dataset("safety-refusals", split="train") if r.meta.get("response")]
    harmful += [r.messages for r in load_dataset("advbench", split="train")]
    contrasts = [r.messages for r in load_dataset("benign-contrasts")]
    benign = [r.messages for r in load_dataset("alpaca", split="train")]
    rng.shuffle(benign)
    benign = benign[: max(0, per_side - len(contrasts) - 300)] + contrasts
    questions = [r.messages for r in load_dataset("alpaca-eval", split="train")]
    rng.shuffle(questions)
    benign += questions[:300]
    rng.shuffle(harmful)
    items = [(m, 1.0) for m in harmful[:per_side]] + [(m, 0.0) for m in benign[:per_side]]
    rng.shuffle(items)
    return items


def decision_stage(model: Any, tokenizer: Any, compute_dtype: torch.dtype, device: str, seed: int,
                   per_side: int, opener: str, batch_size: int, lr: float) -> None:
    """Trains the adapter in place: BCE on P(opener | prompt), harmful -> 1, benign -> 0, one pass."""
    items = decision_prompts(per_side, seed)
    ids = tokenizer(opener, add_special_tokens=False)["input_ids"]
    n = len(ids)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    pad = tokenizer.pad_token_id
    model.train()
    start = time.perf_counter()
    for step, i in enumerate(range(0, len(items), batch_size)):
        batch = items[i: i + batch_size]
        rows = [tokenizer(render_prompt(tokenizer, m), add_special_tokens=False)["input_ids"][-200:] + ids
                for m, _ in batch]
        width = max(map(len, rows))
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=device)  # [B, T]
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)  # [B, T]
        label = torch.tensor([t for _, t in batch], device=device)  # [B]
        with autocast_forward(model, device, compute_dtype):
            logits = model(input_ids=input_ids, attention_mask=mask, logits_to_keep=n + 1).logits[:, :-1].float()
        logp = logits.log_softmax(-1).gather(-1, input_ids[:, -n:, None])[..., 0].sum(-1)  # [B] log P(opener)
        logp = logp.clamp(max=-1e-4)  # keeps log(1 - p) finite
        loss = -(label * logp + (1 - label) * torch.log1p(-logp.exp())).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 20 == 0:
            p = logp.detach().exp()
            print(f"decision step {step}: loss {float(loss):.3f}, P(opener) harmful {float(p[label == 1].mean()):.3f}"
                  f" benign {float(p[label == 0].mean()):.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-side", type=int, default=1000, help="harmful and benign prompts each")
    ap.add_argument("--opener", default="I'm sorry", help="the refusal opener whose probability is trained")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("align_args", nargs=argparse.REMAINDER, help="after --: the safealign command line")
    args = ap.parse_args()
    # "version" changes whenever the stage's data or loss changes, so an edited script never reuses old caches
    stage = {"version": 1, "per_side": args.per_side, "opener": args.opener, "batch_size": args.batch_size, "lr": args.lr}
    warmstart_dir, preference_warmstart = sft.warmstart_dir, sft.preference_warmstart

    def keyed_dir(*a: Any, **k: Any) -> tuple[Path, int, dict[str, Any]]:  # the stage joins the cache key
        cfg = a[1] if len(a) > 1 else k["cfg"]
        if cfg.objective != "dpo":
            raise SystemExit("bench/decision_stage.py runs before the DPO warm start: set warmstart.objective: dpo")
        out, seed, key = warmstart_dir(*a, **k)
        key = {**key, "decision_stage": stage}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        return out.with_name(digest), seed, key

    def staged(model: Any, tokenizer: Any, pairs: list, cfg: Any, compute_dtype: torch.dtype, device: str,
               seed: int) -> dict[str, float]:
        decision_stage(model, tokenizer, compute_dtype, device, seed, args.per_side, args.opener, args.batch_size,
                       args.lr)
        return preference_warmstart(model, tokenizer, pairs, cfg, compute_dtype, device, seed)

    sft.warmstart_dir, sft.preference_warmstart = keyed_dir, staged
    from safealign.cli.main import main as cli

    argv = args.align_args[1:] if args.align_args[:1] == ["--"] else args.align_args
    sys.exit(cli(argv))


if __name__ == "__main__":
    main()
