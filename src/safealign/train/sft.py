"""Supervised warm start before constrained RL.

SmolLM2-135M-Instruct refused about 1 in 100 AdvBench requests sampled at temperature 1 when we
measured it, so group-relative RL almost never sees a refusal to reinforce. A short SFT on three
sources gives RL a policy that can refuse, without teaching it to refuse everything:
refusals of harmful instructions (``safety-refusals``), safe answers to sensitive prompts (the
PKU-SafeRLHF response labelled safe) and the model's own answers to benign instructions
(self-distillation, which anchors helpfulness at zero distribution shift), including the benign
instructions worded most like harmful ones (:mod:`safealign.data.lookalikes`), so refusing is tied to
intent rather than to alarming words.
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch
from tqdm.auto import tqdm

from safealign.data.records import Message
from safealign.generation import HFEngine, SamplingConfig, render_prompt
from safealign.train.config import WarmStartConfig

Example = tuple[list[Message], str, bool]  # (messages, target response, whether the target ends the turn)


def warmstart_examples(cfg: WarmStartConfig, engine: HFEngine, seed: int, split: str | None = "train",
                       max_prompt_chars: int = 600) -> list[Example]:
    """(messages, target response) pairs from the three sources, training split only."""
    from safealign.data.registry import load_dataset

    rng = random.Random(seed)
    examples: list[Example] = []
    refusals = [r for r in load_dataset("safety-refusals", split=split) if r.meta.get("response")]
    rng.shuffle(refusals)
    examples += [(r.messages, r.meta["response"], True) for r in refusals[: cfg.refusals]]
    seen: set[str] = set()
    safe = []
    for pair in load_dataset("pku-safe-unsafe", split=split):
        if pair.prompt not in seen and len(pair.prompt) <= max_prompt_chars:
            seen.add(pair.prompt)
            safe.append((pair.messages, pair.chosen, True))
    rng.shuffle(safe)
    examples += safe[: cfg.safe_answers]
    if cfg.self_distill or cfg.lookalikes:
        benign = [r for r in load_dataset("alpaca", split=split) if len(r.text) <= max_prompt_chars]
        rng.shuffle(benign)
        prompts = [r.messages for r in benign[: cfg.self_distill]]
        if cfg.lookalikes:
            from safealign.data.lookalikes import mine_lookalikes

            # benign instructions worded most like harmful ones, answered normally: against over-refusal
            pool = benign[cfg.self_distill:]
            harmful = [r.messages[-1]["content"] for r in refusals]
            prompts += [pool[i].messages for i in mine_lookalikes([r.text for r in pool], harmful, cfg.lookalikes,
                                                                  seed=seed)]
        outs = engine.generate(prompts, SamplingConfig(max_new_tokens=cfg.self_distill_tokens, temperature=0.7,
                                                       seed=seed, batch_size=32), progress=True)
        # An answer cut at the token limit gets no end-of-turn token: the model learns its start, not to stop.
        examples += [(p, row[0].text, row[0].finish_reason == "eos")
                     for p, row in zip(prompts, outs, strict=True) if row[0].text.strip()]
    rng.shuffle(examples)
    return examples


def _encode(tokenizer: Any, ex: Example, max_length: int) -> tuple[list[int], int]:
    prompt = tokenizer(render_prompt(tokenizer, ex[0]), add_special_tokens=False)["input_ids"]
    target = tokenizer(ex[1].strip(), add_special_tokens=False)["input_ids"]
    if ex[2]:
        target.append(tokenizer.eos_token_id)
    ids = (prompt + target)[:max_length]
    return ids, min(len(prompt), len(ids) - 1)


def supervised_warmstart(model: Any, tokenizer: Any, examples: list[Example], cfg: WarmStartConfig,
                         compute_dtype: torch.dtype, device: str, seed: int) -> dict[str, float]:
    """Cross-entropy on the response tokens only, on the model's trainable parameters (the LoRA adapter)."""
    if not examples:
        raise ValueError("warm start has no examples: check the refusals / safe_answers / self_distill counts")
    encoded = [_encode(tokenizer, ex, cfg.max_length) for ex in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    rng = random.Random(seed)
    order: list[int] = []
    model.train()
    start, losses = time.perf_counter(), []
    pad = tokenizer.pad_token_id
    autocast = (torch.autocast(device.split(":")[0], dtype=compute_dtype)
                if compute_dtype != torch.float32 else torch.autocast(device.split(":")[0], enabled=False))
    for _ in tqdm(range(cfg.steps), desc="warm start (SFT)", unit="step"):
        if len(order) < cfg.batch_size:
            extra = list(range(len(encoded)))
            rng.shuffle(extra)
            order += extra
        idx, order = order[: cfg.batch_size], order[cfg.batch_size:]
        batch = [encoded[i] for i in idx]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        attn = torch.zeros_like(input_ids)
        for r, (ids, p_len) in enumerate(batch):  # right padding; loss only on the response
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attn[r, : len(ids)] = 1
            labels[r, p_len: len(ids)] = torch.tensor(ids[p_len:])
        with autocast:
            out = model(input_ids=input_ids.to(device), attention_mask=attn.to(device), labels=labels.to(device))
        if not torch.isfinite(out.loss):
            raise FloatingPointError(f"warm-start loss is {float(out.loss)}; lower warmstart.lr")
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    model.eval()
    tail = losses[-10:] or [float("nan")]
    return {"sft_examples": float(len(examples)), "sft_loss_first": losses[0] if losses else float("nan"),
            "sft_loss_last10": sum(tail) / len(tail), "sft_seconds": time.perf_counter() - start}


def warmstarted_model(model_ref: str, cfg: WarmStartConfig, seed: int, dtype: str, device: str,
                      lora_r: int, lora_alpha: int, target_modules: list[str]) -> str:
    """Path of the warm-started policy (adapter merged), built once and cached by its configuration.

    Caching by (model, warm-start config, seed) lets every constraint method of a sweep start RL from the
    same SFT model, which also serves as the RL reference model.
    """
    import hashlib
    import json
    import os
    import shutil

    from safealign import hardware, paths
    from safealign.models.loading import load_causal_lm, load_tokenizer, resolve

    key = json.dumps({"model": str(resolve(model_ref)), "cfg": cfg.to_dict(), "seed": seed, "r": lora_r,
                      "alpha": lora_alpha, "targets": list(target_modules)}, sort_keys=True)
    out = paths.home() / "warmstart" / hashlib.sha256(key.encode()).hexdigest()[:16]
    if (out / ".complete").exists():
        return str(out)
    from peft import LoraConfig, get_peft_model

    tokenizer = load_tokenizer(model_ref)
    base = load_causal_lm(model_ref, dtype=dtype, device=device)
    examples = warmstart_examples(cfg, HFEngine(base, tokenizer), seed)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                            target_modules=list(target_modules), task_type="CAUSAL_LM"))
    stats = supervised_warmstart(model, tokenizer, examples, cfg, hardware.resolve_dtype(dtype, device), device, seed)
    merged = model.merge_and_unload()
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "warmstart.json").write_text(json.dumps({"key": json.loads(key), "stats": stats}, indent=2))
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return str(out)
