"""Warm start before constrained RL: SFT, or DPO on preference pairs from the same sources.

SmolLM2-135M-Instruct refused about 1 in 100 AdvBench requests sampled at temperature 1 when we
measured it, so group-relative RL almost never sees a refusal to reinforce. A short SFT on three
sources gives RL a policy that can refuse, without teaching it to refuse everything:
refusals of harmful instructions (``safety-refusals``), safe answers to sensitive prompts (the
PKU-SafeRLHF response labelled safe) and the model's own answers to benign instructions
(self-distillation, which anchors helpfulness at zero distribution shift), including the benign
instructions worded most like harmful ones (:mod:`safealign.data.lookalikes`), so refusing is tied to
intent rather than to alarming words.

SFT on refusals also raises the probability of refusing *everywhere* (the 135M model learns the opener
"I'm sorry, but I cannot" for any request). ``objective: dpo`` pairs the same sources so that a refusal is
preferred for harmful prompts and dispreferred for benign ones: only the prompt decides (docs/training.md).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from safealign import hardware
from safealign.data.records import Message, conversation_chars
from safealign.generation import OFFLINE_BATCH_SIZE, HFEngine, SamplingConfig, render_prompt
from safealign.models.adapters import autocast_forward
from safealign.train.config import WarmStartConfig
from safealign.train.rollout import SequenceBatch, build_sequences, response_logprobs

Example = tuple[list[Message], str, bool]  # (messages, target response, whether the target ends the turn)


@dataclass
class PreferenceExample:
    """One prompt with a preferred and a dispreferred response (the ``dpo`` warm start)."""

    messages: list[Message]
    chosen: str
    rejected: str
    chosen_ends: bool = True  # whether the response ends the turn (an answer cut at the token limit does not)
    rejected_ends: bool = True
    refuse: bool = False  # the preferred response is the safe one (harmful or PKU prompt), not the model's answer


def _refusal_records(split: str | None, rng: random.Random) -> list:
    from safealign.data.registry import load_dataset

    refusals = [r for r in load_dataset("safety-refusals", split=split) if r.meta.get("response")]
    rng.shuffle(refusals)
    return refusals


_HEDGE_RE = re.compile(r"\bas an ai\b", re.IGNORECASE)


def _refusal_targets(refusals: list, cfg: WarmStartConfig) -> list:
    """The first ``cfg.refusals`` records whose response fits ``cfg.refusal_style``.

    ``plain`` drops the responses with the dataset's hedge in their first 200 characters ("I'm sorry, but as
    an AI language model, I ..."; 805 of its 1,994 training responses). The idea: a refusal that names no
    harm fits a benign prompt as well as a harmful one. Measured (docs/results.md, session 11), it did not
    hold: the policy refused in another voice and over-refused more. ``refused_only`` drops the responses that
    do not refuse (516 of 1,994), which would otherwise be preferred over the model's answer to a harmful prompt.
    """
    if cfg.refusal_style == "plain":
        refusals = [r for r in refusals if not _HEDGE_RE.search(r.meta["response"][:200])]
    if cfg.refused_only:
        from safealign.scoring.data import looks_like_refusal

        refusals = [r for r in refusals if looks_like_refusal(r.meta["response"])]
    return refusals[: cfg.refusals]


def _pku_pairs(split: str | None, rng: random.Random, n: int, max_prompt_chars: int) -> list[tuple]:
    """(messages, safe response, unsafe response) for n distinct PKU-SafeRLHF prompts."""
    from safealign.data.registry import load_dataset

    seen: set[str] = set()
    pairs = []
    for pair in load_dataset("pku-safe-unsafe", split=split):
        if pair.prompt not in seen and len(pair.prompt) <= max_prompt_chars:
            seen.add(pair.prompt)
            pairs.append((pair.messages, pair.chosen, pair.rejected))
    rng.shuffle(pairs)
    return pairs[:n]


def _benign_prompts(cfg: WarmStartConfig, rng: random.Random, seed: int, split: str | None, refusals: list,
                    max_prompt_chars: int) -> list[list[Message]]:
    """Benign prompts the model answers itself: random Alpaca, Alpaca look-alikes of harmful ones, questions,
    contrasts."""
    from safealign.data.registry import load_dataset

    if not (cfg.self_distill or cfg.lookalikes or cfg.questions or cfg.contrasts):
        return []
    benign = [r for r in load_dataset("alpaca", split=split) if conversation_chars(r.messages) <= max_prompt_chars]
    rng.shuffle(benign)
    prompts = [r.messages for r in benign[: cfg.self_distill]]
    if cfg.lookalikes:
        from safealign.data.lookalikes import mine_lookalikes

        # benign instructions worded most like harmful ones, answered normally: against over-refusal
        pool = benign[cfg.self_distill:]
        harmful = [r.messages[-1]["content"] for r in refusals]
        prompts += [pool[i].messages for i in mine_lookalikes([r.text for r in pool], harmful, cfg.lookalikes, seed=seed,
                                                            method=cfg.lookalike_method)]
    if cfg.questions:
        # the whole conversation, as for the RL pools: questions_data may hold multi-turn HH-RLHF dialogues
        questions = [r for r in load_dataset(cfg.questions_data, split=split)
                     if conversation_chars(r.messages) <= max_prompt_chars]
        rng.shuffle(questions)
        prompts += [r.messages for r in questions[: cfg.questions]]
    if cfg.contrasts:
        # a draw of its own, so the other sources' draws do not move when contrasts are added
        contrasts = list(load_dataset(cfg.contrasts_data, split=split))
        random.Random(f"{seed}:contrasts").shuffle(contrasts)
        prompts += [r.messages for r in contrasts[: cfg.contrasts]]
    return prompts


def _own_answers(engine: HFEngine, prompts: list[list[Message]], cfg: WarmStartConfig,
                 seed: int) -> list[tuple[str, bool]]:
    """The model's own answers (text, ends the turn); an answer cut at the token limit gets no end-of-turn token."""
    if not prompts:
        return []
    outs = engine.generate(prompts, SamplingConfig(max_new_tokens=cfg.self_distill_tokens, temperature=0.7,
                                                   seed=seed, batch_size=OFFLINE_BATCH_SIZE), progress=True)
    return [(row[0].text, row[0].finish_reason == "eos") for row in outs]


def _own_refusals(engine: HFEngine, prompts: list[list[Message]], cfg: WarmStartConfig,
                  seed: int) -> list[tuple[str, bool]]:
    """The model's own refusal of each prompt (text, ends the turn): a drawn opener, then its continuation.

    Why: the template refusals that benign pairs disprefer are short and off topic, while the model's own
    over-refusals name the request ("I'm sorry, but I cannot assist with purchasing beverages"); pushing down
    the templates leaves that voice untouched on benign prompts while harmful pairs push it up.
    """
    if not prompts:
        return []
    rng = random.Random(f"{seed}:rejections")  # its own stream: the other draws of the warm start do not move
    openers = [o for o in cfg.rejection_openers if o.strip()]
    chosen = [rng.choice(openers) for _ in prompts]
    outs = engine.generate(prompts, SamplingConfig(max_new_tokens=cfg.rejection_tokens, temperature=0.7,
                                                   seed=seed + 7919, batch_size=OFFLINE_BATCH_SIZE),
                           prefixes=chosen, progress=True)
    return [(o + row[0].text, row[0].finish_reason == "eos") for o, row in zip(chosen, outs, strict=True)]


def _usable_answer(text: str) -> bool:
    """An own answer worth imitating: non-empty and not itself a refusal (the base model refuses a few benign asks)."""
    from safealign.scoring.data import looks_like_refusal

    return bool(text.strip()) and not looks_like_refusal(text)


def _budgeted(items: list, limit: int | None, rng: random.Random) -> list:
    """The items in a seeded random order, cut to ``limit``: the warm start's steps x batch size.

    Why: the model's own answers are the warm start's slowest part (minutes of generation), and a run of
    S steps x B examples never sees more than S x B of them, so only those are generated.
    """
    items = list(items)
    rng.shuffle(items)
    return items if limit is None else items[: max(limit, 0)]


def warmstart_examples(cfg: WarmStartConfig, engine: HFEngine, seed: int, split: str | None = "train",
                       max_prompt_chars: int = 600, limit: int | None = None) -> list[Example]:
    """(messages, target response) pairs from the sources, training split only; at most ``limit`` of them."""
    rng = random.Random(seed)
    refusals = _refusal_records(split, rng)
    fixed: list[Example] = [(r.messages, r.meta["response"], True) for r in _refusal_targets(refusals, cfg)]
    fixed += [(m, safe, True) for m, safe, _ in _pku_pairs(split, rng, cfg.safe_answers, max_prompt_chars)]
    benign = _benign_prompts(cfg, rng, seed, split, refusals, max_prompt_chars)
    chosen = _budgeted([(ex, None) for ex in fixed] + [(None, p) for p in benign], limit, rng)
    answers = iter(_own_answers(engine, [p for ex, p in chosen if ex is None], cfg, seed))
    examples: list[Example] = []
    for ex, prompt in chosen:
        if ex is None:
            text, ends = next(answers)
            if not _usable_answer(text):
                continue
            ex = (prompt, text, ends)
        examples.append(ex)
    return examples


def warmstart_pairs(cfg: WarmStartConfig, engine: HFEngine, seed: int, split: str | None = "train",
                    max_prompt_chars: int = 600, limit: int | None = None) -> list[PreferenceExample]:
    """Preference pairs from the same sources, training split only; at most ``limit`` of them.

    Harmful prompt: its refusal over the model's own (complying) answer. PKU prompt: the safe response over
    the unsafe one. Benign prompt: the model's own answer over a generic refusal ("I'm sorry, but I can't
    help with that."), which fits any prompt, so what is pushed down is refusing itself, not an off-topic text.
    Refusals are thus both preferred and dispreferred, and only the prompt decides which.
    """
    from safealign.scoring.data import HEDGED_REFUSALS_TRAIN, REFUSALS_TRAIN

    rejections = REFUSALS_TRAIN + (HEDGED_REFUSALS_TRAIN if cfg.hedged_rejections else ())
    rng = random.Random(seed)
    refusals = _refusal_records(split, rng)
    harmful = [("harmful", r.messages, r.meta["response"]) for r in _refusal_targets(refusals, cfg)]
    pku = [("pku", m, (safe, unsafe)) for m, safe, unsafe in _pku_pairs(split, rng, cfg.safe_answers,
                                                                         max_prompt_chars)]
    benign = [("benign", p, None) for p in _benign_prompts(cfg, rng, seed, split, refusals, max_prompt_chars)]
    chosen = _budgeted(harmful + pku + benign, limit, rng)
    answers = iter(_own_answers(engine, [m for kind, m, _ in chosen if kind != "pku"], cfg, seed))
    own_rejections = iter(_own_refusals(engine, [m for kind, m, _ in chosen if kind == "benign"], cfg, seed)
                          if cfg.benign_rejections == "own" else [])
    pairs = []
    for kind, messages, data in chosen:
        if kind == "pku":
            pairs.append(PreferenceExample(messages, *data, refuse=True))
            continue
        text, ends = next(answers)
        refusal = next(own_rejections, None) if kind == "benign" else None  # None: benign_rejections templates
        if not _usable_answer(text):
            continue
        if kind == "harmful":  # the dataset's refusal over the model's own (complying) answer
            pairs.append(PreferenceExample(messages, data, text, True, ends, refuse=True))
        elif refusal is not None:  # the model's own answer over its own refusal of the same prompt
            pairs.append(PreferenceExample(messages, text, refusal[0], ends, refusal[1]))
        else:  # the model's own answer over a generic refusal
            pairs.append(PreferenceExample(messages, text, rng.choice(rejections), ends, True))
    return pairs


def _encode(tokenizer: Any, ex: Example, max_length: int) -> tuple[list[int], int]:
    prompt = tokenizer(render_prompt(tokenizer, ex[0]), add_special_tokens=False)["input_ids"]
    target = tokenizer(ex[1].strip(), add_special_tokens=False)["input_ids"]
    if ex[2]:
        target.append(tokenizer.eos_token_id)
    ids = (prompt + target)[:max_length]
    return ids, min(len(prompt), len(ids) - 1)


def _epoch_order(strata: list[int] | None, n: int, rng: random.Random) -> list[int]:
    """One seeded pass over range(n); with ``strata``, each stratum spread evenly through it.

    Stratified, the i-th element comes from the stratum furthest behind its share of the first i, so every
    window of the pass, and so every batch, holds each stratum in about its overall proportion.
    """
    if strata is None:
        order = list(range(n))
        rng.shuffle(order)
        return order
    pools: dict[int, list[int]] = {}
    for i, s in enumerate(strata):
        pools.setdefault(s, []).append(i)
    for pool in pools.values():
        rng.shuffle(pool)
    share = {s: len(pool) / n for s, pool in pools.items()}
    taken = dict.fromkeys(pools, 0)
    order = []
    for t in range(1, n + 1):
        s = max((s for s in pools if taken[s] < len(pools[s])), key=lambda s: share[s] * t - taken[s])
        order.append(pools[s][taken[s]])
        taken[s] += 1
    return order


def _batches(n: int, batch_size: int, steps: int, seed: int, desc: str,
             strata: list[int] | None = None) -> Iterator[list[int]]:
    """Indices of ``steps`` batches, walking seeded passes over range(n) (with a progress bar).

    ``strata`` (one label per index) makes each pass stratified (``_epoch_order``); None keeps plain
    permutations, which reproduces the warm starts cached before the option existed.
    """
    rng = random.Random(seed)
    order: list[int] = []
    for _ in tqdm(range(steps), desc=desc, unit="step"):
        if len(order) < batch_size:
            order += _epoch_order(strata, n, rng)
        idx, order = order[:batch_size], order[batch_size:]
        yield idx


def _pad(batch: list[tuple[list[int], int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input_ids, attention_mask and labels [N, L]; labels are -100 outside the response."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    labels = torch.full_like(input_ids, -100)
    attn = torch.zeros_like(input_ids)
    for r, (ids, p_len) in enumerate(batch):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        attn[r, : len(ids)] = 1
        labels[r, p_len: len(ids)] = torch.tensor(ids[p_len:])
    return input_ids, attn, labels


def _step(params: list[torch.Tensor], opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
          loss: torch.Tensor, what: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what} loss is {float(loss)}; lower warmstart.lr")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def lr_schedule(opt: torch.optim.Optimizer, name: str, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate factor: 1 (constant), or (steps - t) / steps at step t (linear decay to 0)."""
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    if name == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(steps - t, 0) / max(steps, 1))
    raise ValueError(f"unknown lr_schedule '{name}'; use constant or linear")


def _stats(losses: list[float], n: int, start: float, **extra: float) -> dict[str, float]:
    tail = losses[-10:] or [float("nan")]
    return {"sft_examples": float(n), "sft_loss_first": losses[0] if losses else float("nan"),
            "sft_loss_last10": sum(tail) / len(tail), "sft_seconds": time.perf_counter() - start, **extra}


def supervised_warmstart(model: Any, tokenizer: Any, examples: list[Example], cfg: WarmStartConfig,
                         compute_dtype: torch.dtype, device: str, seed: int) -> dict[str, float]:
    """Cross-entropy on the response tokens only, on the model's trainable parameters (the LoRA adapter)."""
    if not examples:
        raise ValueError("warm start has no examples: check the refusals / safe_answers / self_distill counts")
    encoded = [_encode(tokenizer, ex, cfg.max_length) for ex in examples]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = lr_schedule(opt, cfg.lr_schedule, cfg.steps)
    model.train()
    start, losses = time.perf_counter(), []
    for idx in _batches(len(encoded), cfg.batch_size, cfg.steps, seed, "warm start (SFT)"):
        input_ids, attn, labels = _pad([encoded[i] for i in idx], tokenizer.pad_token_id)
        with autocast_forward(model, device, compute_dtype):
            out = model(input_ids=input_ids.to(device), attention_mask=attn.to(device), labels=labels.to(device))
        _step(params, opt, sched, out.loss, "warm-start")
        losses.append(float(out.loss.detach()))
    model.eval()
    return _stats(losses, len(examples), start)


def _response_batch(rows: list[tuple[list[int], int]], pad: int) -> SequenceBatch:
    """(ids, prompt length) rows in the RL trainer's response-aligned layout."""
    return build_sequences([ids[:p] for ids, p in rows], [ids[p:] for ids, p in rows], pad)


def _sequence_logprobs(model: Any, batch: SequenceBatch, compute_dtype: torch.dtype,
                       device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-prob [N] and response token count [N].

    A DPO batch holds each prompt twice (its chosen and its rejected answer), so rows that share a prompt
    run it through the model once (``share_prompts``, as the RL trainer does; the same math up to rounding).
    """
    logp, _, _ = response_logprobs(model, batch, device, compute_dtype, share_prompts=True)  # [N, T]
    mask = batch.response_mask.to(logp.device)
    return (logp * mask).sum(-1), mask.sum(-1)


def _padded_area(rows: list[tuple[list[int], int]]) -> int:
    """Token slots of ``rows`` in the response-aligned layout: N x (widest prompt + longest response)."""
    return len(rows) * (max(p for _, p in rows) + max(len(ids) - p for ids, p in rows))


def length_groups(rows: list[tuple[list[int], int]], min_rows: int = 2) -> list[list[int]]:
    """Row indices in one or two groups of similar length, whichever pads fewer token slots.

    Why: a DPO batch mixes long dataset refusals with short generic ones, so one padded batch is about a
    third padding (36% of the slots on pairs shaped like the demo's); two length-sorted forwards pad 19%
    fewer slots, and a DPO step took 19% less time in an A/B on them (docs/training.md).
    Groups have at least ``min_rows`` rows, so none runs at batch size 1.
    """
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i][0]), i))
    best, groups = _padded_area(rows), [order]
    for k in range(min_rows, len(rows) - min_rows + 1):
        low, high = [rows[i] for i in order[:k]], [rows[i] for i in order[k:]]
        if (area := _padded_area(low) + _padded_area(high)) < best:
            best, groups = area, [order[:k], order[k:]]
    return groups


def _grouped_sequence_logprobs(model: Any, rows: list[tuple[list[int], int]], pad: int, compute_dtype: torch.dtype,
                               device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_sequence_logprobs` of ``rows`` [N] computed in :func:`length_groups`; the same values up to rounding."""
    logp, n_tok = torch.empty(len(rows), device=device), torch.empty(len(rows), device=device)
    parts = []
    for group in length_groups(rows):
        lp, n = _sequence_logprobs(model, _response_batch([rows[i] for i in group], pad), compute_dtype, device)
        parts.append((torch.tensor(group, device=device), lp, n))
    index = torch.cat([g for g, _, _ in parts])
    # index_put is differentiable in the values, so the gradient reaches every group's forward
    logp = logp.index_put((index,), torch.cat([lp for _, lp, _ in parts]))
    n_tok = n_tok.index_put((index,), torch.cat([n.to(n_tok.dtype) for _, _, n in parts]))
    return logp, n_tok


def preference_warmstart(model: Any, tokenizer: Any, pairs: list[PreferenceExample], cfg: WarmStartConfig,
                         compute_dtype: torch.dtype, device: str, seed: int) -> dict[str, float]:
    """DPO on the LoRA adapter (reference = adapter disabled) plus ``chosen_nll`` x cross-entropy on chosen."""
    from safealign.losses import dpo_loss

    if not pairs:
        raise ValueError("warm start has no preference pairs: check the refusals / safe_answers / self_distill counts")
    if not hasattr(model, "disable_adapter"):
        raise ValueError("the dpo warm start needs a LoRA (peft) model: its reference is the adapter switched off")
    encoded = [(_encode(tokenizer, (p.messages, p.chosen, p.chosen_ends), cfg.max_length),
                _encode(tokenizer, (p.messages, p.rejected, p.rejected_ends), cfg.max_length)) for p in pairs]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = lr_schedule(opt, cfg.lr_schedule, cfg.steps)
    model.train()
    start, losses, accs = time.perf_counter(), [], []
    # stratified: every batch pairs refusals preferred (harmful prompts) with refusals dispreferred (benign ones)
    strata = [int(p.refuse) for p in pairs] if cfg.batch_mix == "stratified" else None
    for idx in _batches(len(encoded), cfg.batch_size, cfg.steps, seed, "warm start (DPO)", strata):
        b = len(idx)
        rows = [encoded[i][0] for i in idx] + [encoded[i][1] for i in idx]  # B chosen, then B rejected
        with torch.no_grad(), model.disable_adapter():
            ref, _ = _grouped_sequence_logprobs(model, rows, tokenizer.pad_token_id, compute_dtype, device)  # [2B]
        logp, n_tok = _grouped_sequence_logprobs(model, rows, tokenizer.pad_token_id, compute_dtype, device)  # [2B]
        loss, info = dpo_loss(logp[:b], logp[b:], ref[:b], ref[b:], cfg.dpo_beta)
        if cfg.chosen_nll > 0:  # keeps the preferred responses likely, not only more likely than the rejected
            loss = loss + cfg.chosen_nll * (-logp[:b].sum() / n_tok[:b].sum().clamp(min=1))
        _step(params, opt, sched, loss, "warm-start DPO")
        losses.append(float(loss.detach()))
        accs.append(info["dpo_accuracy"])
    model.eval()
    tail = accs[-10:] or [float("nan")]
    return _stats(losses, len(pairs), start, dpo_accuracy_last10=sum(tail) / len(tail))


# options added after warm starts were first cached: at these defaults they stay out of the cache key, so
# older caches stay valid (lookalike_method: session 14, batch_mix: session 16, refused_only and contrasts: session 21,
# benign_rejections and its two options: session 22). Literal values, not the fields' current defaults: if a default
# changes later, caches built with the old value must not be reused under the new one.
_KEYLESS_DEFAULTS = {"lookalike_method": "embedding", "batch_mix": "random", "refused_only": False, "contrasts": 0,
                     "contrasts_data": "benign-contrasts", "benign_rejections": "templates",
                     "rejection_openers": ["I'm sorry, but I cannot", "I'm sorry, but I can't",
                                           "I apologize, but I cannot",
                                           "I'm sorry, but as an AI language model, I cannot"],
                     "rejection_tokens": 32}


def warmstart_dir(model_ref: str, cfg: WarmStartConfig, seed: int, lora_r: int, lora_alpha: int,
                  target_modules: list[str]) -> tuple[Path, int, dict[str, Any]]:
    """Cache folder of a warm start, its effective seed (``cfg.seed``, else the run's ``seed``) and its key."""
    import hashlib
    import json

    from safealign import paths
    from safealign.models.loading import resolve

    seed = seed if cfg.seed is None else cfg.seed
    # "data": 2 since own answers are generated only for the steps x batch_size examples a run uses
    fields = {k: v for k, v in cfg.to_dict().items() if not (k in _KEYLESS_DEFAULTS and _KEYLESS_DEFAULTS[k] == v)}
    del fields["seed"]  # added in session 15; the effective seed is keyed below, as before
    key = {"model": str(resolve(model_ref)), "cfg": fields, "seed": seed, "r": lora_r, "data": 2,
           "alpha": lora_alpha, "targets": list(target_modules)}
    if cfg.contrasts:  # a built-in set that may be edited between versions: its prompts, not its name, key the cache
        from safealign.data.registry import load_dataset

        # in load order, not sorted: the seeded shuffle of _benign_prompts draws from that order
        texts = "\n".join(r.text for r in load_dataset(cfg.contrasts_data))
        key["contrasts_sha1"] = hashlib.sha1(texts.encode()).hexdigest()[:12]
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return paths.home() / "warmstart" / digest, seed, key


def warmstarted_model(model_ref: str, cfg: WarmStartConfig, seed: int, dtype: str, device: str,
                      lora_r: int, lora_alpha: int, target_modules: list[str]) -> str:
    """Path of the warm-started policy (adapter merged), built once and cached by its configuration.

    Caching by (model, warm-start config, seed) lets every constraint method of a sweep start RL from the
    same warm-started model, which also serves as the RL reference model; ``cfg.seed`` lets RL seeds share it.
    """
    import json
    import os
    import shutil

    from peft import LoraConfig, get_peft_model

    from safealign.models.loading import load_causal_lm, load_tokenizer

    out, seed, key = warmstart_dir(model_ref, cfg, seed, lora_r, lora_alpha, target_modules)
    if (out / ".complete").exists():
        return str(out)
    tokenizer = load_tokenizer(model_ref)
    base = load_causal_lm(model_ref, dtype=dtype, device=device)
    build, train = ((warmstart_pairs, preference_warmstart) if cfg.objective == "dpo"
                    else (warmstart_examples, supervised_warmstart))
    # one answer per prompt, nothing to share; and a cached warm start must match a fresh one bit for bit
    data = build(cfg, HFEngine(base, tokenizer, share_prefill=False), seed, limit=cfg.steps * cfg.batch_size)
    torch.manual_seed(seed)
    model = get_peft_model(base, LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                            target_modules=list(target_modules), task_type="CAUSAL_LM"))
    stats = train(model, tokenizer, data, cfg, hardware.resolve_dtype(dtype, device), device, seed)
    merged = model.merge_and_unload()
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / "warmstart.json").write_text(json.dumps({"key": key, "stats": stats}, indent=2))
    (tmp / ".complete").write_text("ok\n")
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return str(out)
