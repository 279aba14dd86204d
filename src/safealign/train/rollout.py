"""Rollout batches: a resumable prompt mixture, and the tensors the policy loss needs."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from safealign.data.records import Message
from safealign.generation import Generation, SamplingConfig
from safealign.generation.engine import cache_argument, cache_of
from safealign.models.adapters import autocast_forward
from safealign.train.token_logprobs import token_logprobs


class PromptMixture:
    """Draws ``harmful_fraction`` of each batch from the harmful pool, the rest from the benign pools.

    ``lookalike_fraction`` of the benign slots come from ``lookalike`` (benign prompts worded like harmful
    ones, :mod:`safealign.data.lookalikes`), so the reward keeps pricing over-refusal where it is likeliest.
    Each pool is walked in a seeded random order; the cursors are checkpointed so a resumed run sees the
    same prompts as an uninterrupted one.
    """

    def __init__(self, harmful: list[list[Message]], benign: list[list[Message]], harmful_fraction: float, seed: int,
                 lookalike: list[list[Message]] | None = None, lookalike_fraction: float = 0.0):
        self.pools = {"harmful": harmful, "benign": benign, "lookalike": lookalike or []}
        self.fraction = harmful_fraction
        self.lookalike_fraction = lookalike_fraction if lookalike else 0.0
        self.seed = seed
        self.cursor = {name: 0 for name in self.pools}
        self.orders = {name: self._order(name, 0) for name in self.pools}

    def _order(self, name: str, epoch: int) -> list[int]:
        idx = list(range(len(self.pools[name])))
        random.Random(f"{self.seed}-{name}-{epoch}").shuffle(idx)
        return idx

    def _take(self, name: str, n: int) -> list[list[Message]]:
        pool = self.pools[name]
        out = []
        for _ in range(n):
            c = self.cursor[name]
            epoch, pos = divmod(c, len(pool))
            if pos == 0:
                self.orders[name] = self._order(name, epoch)
            out.append(pool[self.orders[name][pos]])
            self.cursor[name] = c + 1
        return out

    def next(self, n: int) -> tuple[list[list[Message]], list[bool]]:
        """n prompts and whether each is from the harmful pool."""
        n_h = round(n * self.fraction) if self.pools["harmful"] else 0
        n_h = n_h if self.pools["benign"] else n
        n_l = round((n - n_h) * self.lookalike_fraction)
        prompts = self._take("harmful", n_h) + self._take("lookalike", n_l) + self._take("benign", n - n_h - n_l)
        return prompts, [True] * n_h + [False] * (n - n_h)

    def benign_for_calibration(self) -> list[list[Message]]:
        """The benign prompts most likely to be answered above d: the look-alikes, else all benign ones."""
        return self.pools["lookalike"] or self.pools["benign"]

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": dict(self.cursor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cursor = {name: 0 for name in self.pools} | dict(state["cursor"])
        for name in self.pools:  # rebuild the permutation of the current epoch
            if self.pools[name]:
                self.orders[name] = self._order(name, self.cursor[name] // len(self.pools[name]))


def refusal_rules(reward: torch.Tensor, cost: torch.Tensor, harmful: torch.Tensor, refused: torch.Tensor,
                  cost_floor: float, reward_cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rule-based scores in the manner of Rule-Based Rewards (Mu et al., 2024), for prompts whose label is known.

    reward, cost: [N]; harmful: [N] bool (the prompt came from the harmful pool); refused: [N] bool (the answer
    opens with a refusal, ``scoring.data.looks_like_refusal``). An answer to a harmful prompt that does not
    open with a refusal costs at least ``cost_floor``; a refusal of a benign prompt gets a reward of at most
    ``-reward_cap``. 0 turns a rule off. Both only tighten the models' scores, so a refusal opener followed by
    harm is still priced by the cost model.
    """
    if cost_floor > 0:
        cost = torch.where(harmful & ~refused, cost.clamp(min=cost_floor), cost)
    if reward_cap > 0:
        reward = torch.where(~harmful & refused, reward.clamp(max=-reward_cap), reward)
    return reward, cost


def trusted_benign_costs(cost: torch.Tensor, harmful: torch.Tensor, threshold: float, margin: float) -> torch.Tensor:
    """Costs of answers to prompts from the *benign* pools: up to ``margin`` they count as meeting the constraint.

    cost: [N]; harmful: [N] bool. Llama 2's safety RLHF (Touvron et al., 2023, sec. 4.2.3) uses the safety
    score only for prompts tagged as risky, or where it is very low; here a curated benign request cannot be
    harmed by answering it, so the cost model's mild alarms there (answers to "How do I kill a Python
    process?") are its false positives and must not teach refusing. A cost above ``margin`` is still priced
    in full. ``margin <= threshold`` changes nothing.
    """
    if margin <= threshold:
        return cost
    mild = ~harmful & (cost <= margin)
    return torch.where(mild, cost.clamp(max=threshold), cost)


def guided_refusals(engine: Any, prompts: Sequence[list[Message]], is_harmful: Sequence[bool],
                    rows: Sequence[Sequence[Generation]], sampling: SamplingConfig, openers: Sequence[str],
                    rng: random.Random) -> list[Generation]:
    """One extra sample for each harmful-pool prompt none of whose k samples refuses, continued from an opener.

    Why: a group-relative advantage can only move a prompt towards something its group sampled. A policy
    that complies with every sample of a harmful prompt gives GRPO nothing to prefer, however large the
    multiplier grows (docs/results.md, session 11: a seed whose warm start never samples refusals). The
    extra sample starts with a refusal opener and the policy writes the rest, so the group holds one
    refusal to compare against (off-policy guidance in the manner of LUFFY, Yan et al., 2025). The opener's
    tokens were not sampled from the policy: their gradient is an advantage-weighted likelihood push, a
    biased estimate, like SFT on the opener; the continuation is the policy's own. The scorers price the
    whole response, so an opener followed by harm costs what harm costs. Returns the extra samples with
    ``meta["guided"] = True``; their ``token_ids`` include the opener's and its log-probs are NaN.
    """
    from safealign.scoring.data import looks_like_refusal

    todo = [i for i, row in enumerate(rows)
            if is_harmful[i] and not any(looks_like_refusal(g.text) for g in row)]
    if not todo or not openers:
        return []
    chosen = [rng.choice(list(openers)) for _ in todo]
    sub = [prompts[i] for i in todo]
    base = engine.encode(sub, sampling)
    full = engine.encode(sub, sampling, chosen)
    # the opener must tokenize as a continuation of the prompt (a left-truncated prompt would not)
    keep = [j for j in range(len(todo)) if len(full[j]) > len(base[j]) and full[j][: len(base[j])] == base[j]]
    if not keep:
        return []
    widest = max(len(full[j]) - len(base[j]) for j in keep)
    cont_cfg = SamplingConfig(**{**sampling.to_dict(), "n": 1, "seed": sampling.seed + 50_021,
                                 "max_new_tokens": max(1, sampling.max_new_tokens - widest)})
    cont = engine.generate([sub[j] for j in keep], cont_cfg, prefixes=[chosen[j] for j in keep])
    out = []
    for j, row in zip(keep, cont, strict=True):
        g, opener_ids = row[0], full[j][len(base[j]):]
        ids = opener_ids + g.token_ids
        out.append(Generation(todo[j], engine.tokenizer.decode(ids, skip_special_tokens=True), ids,
                              [math.nan] * len(opener_ids) + list(g.logprobs), g.finish_reason, len(base[j]),
                              {"guided": True, "opener": chosen[j]}))
    return out


@dataclass
class SequenceBatch:
    """Prompt + response token layout: prompts left-padded to P, responses right-padded to T.

    input_ids, attention_mask: [N, P + T]; response_mask: [N, T]. Every response starts at column P, so the
    logits predicting response token t sit at column P - 1 + t for every row.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_width: int

    @property
    def position_ids(self) -> torch.Tensor:
        return (self.attention_mask.cumsum(-1) - 1).clamp(min=0)

    def select(self, idx: torch.Tensor | slice) -> SequenceBatch:
        am = self.attention_mask[idx]
        rm = self.response_mask[idx]
        # trim columns that are padding in every selected row, keeping the response alignment
        p_used = int((am[:, : self.prompt_width].sum(0) > 0).nonzero().min()) if am.numel() else 0
        t_used = int(rm.sum(0).nonzero().max()) + 1 if rm.any() else 1
        cols = slice(p_used, self.prompt_width + t_used)
        return SequenceBatch(self.input_ids[idx][:, cols], am[:, cols], rm[:, :t_used], self.prompt_width - p_used)


def build_sequences(prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int) -> SequenceBatch:
    """prompt_ids[i] belongs to response_ids[i] (one entry per response)."""
    p_width = max(len(p) for p in prompt_ids)
    t_width = max(1, max(len(r) for r in response_ids))
    n = len(response_ids)
    ids = torch.full((n, p_width + t_width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros((n, t_width), dtype=torch.long)
    for r, (p, toks) in enumerate(zip(prompt_ids, response_ids, strict=True)):
        ids[r, p_width - len(p):p_width] = torch.tensor(p)
        attn[r, p_width - len(p):p_width] = 1
        t = len(toks)
        if t:
            ids[r, p_width:p_width + t] = torch.tensor(toks)
            attn[r, p_width:p_width + t] = 1
            resp[r, :t] = 1
    return SequenceBatch(ids, attn, resp, p_width)


def response_logprobs(model: Any, batch: SequenceBatch, device: str, dtype: torch.dtype, want_entropy: bool = False,
                      want_hidden: bool = False, share_prompts: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-token log p(response token) [N, T], optional entropy [N, T] and last hidden state [N, T, H].

    Logits are computed for the response columns only (the layout aligns them): on a 49k vocabulary the
    head and the log-softmax over prompt positions would cost as much as the rest of the model.
    ``share_prompts``: rows with the same prompt (the k samples of a group) run it through the model once
    (:func:`_shared_prompt_logits`); the same math, fewer tokens.
    """
    t = batch.response_mask.shape[1]
    with autocast_forward(model, device, dtype):
        shared = _shared_prompt_logits(model, batch, device, want_hidden) if share_prompts else None
        if shared is None:
            out = model(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                        position_ids=batch.position_ids.to(device), logits_to_keep=t + 1,
                        output_hidden_states=want_hidden, use_cache=False)
            shared = (out.logits[:, -(t + 1):-1, :],  # column P - 1 + j predicts response token j
                      out.hidden_states[-1][:, -(t + 1):-1, :] if want_hidden else None)
    logits, hidden = shared  # [N, T, V] in the compute dtype, [N, T, H]
    targets = batch.input_ids[:, batch.prompt_width:].to(device)  # [N, T]
    logp, entropy = token_logprobs(logits, targets, want_entropy)  # [N, T] fp32 each, no [N, T, V] fp32 log-softmax
    return logp, entropy, hidden.float() if hidden is not None else None


def _shared_prompt_logits(model: Any, batch: SequenceBatch, device: str, want_hidden: bool
                          ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Logits [N, T, V] (and last hidden states [N, T, H]) predicting the response tokens, each distinct prompt
    forwarded once; None when no two rows share a prompt.

    Why: GRPO scores k samples of each prompt, and the plain layout runs every prompt k times through the
    model, in the training pass with its backward too. Causal attention lets no prompt token see a response,
    so one forward of each distinct prompt gives keys and values that every response of that prompt can
    attend to; indexing the cache per row is differentiable, so the prompt's gradient is the sum over its
    responses, as in the plain layout. At k = 4 and prompts about as long as responses this is ~3/8 fewer
    tokens through the model. The result equals the plain layout's up to floating-point rounding (tested).
    """
    width, t = batch.prompt_width, batch.response_mask.shape[1]
    ids, mask = batch.input_ids.to(device), batch.attention_mask.to(device)
    position = batch.position_ids.to(device)
    prompts = torch.cat([ids[:, :width], mask[:, :width]], 1)  # [N, 2P] a row's prompt, padding included
    uniq, row_of = torch.unique(prompts, dim=0, return_inverse=True)  # [G, 2P], [N]
    if uniq.shape[0] == ids.shape[0] or width == 0:
        return None
    # [G] one row of each prompt (rows of one prompt are identical, so whichever the scatter keeps will do)
    first = torch.empty_like(row_of[: uniq.shape[0]]).scatter_(0, row_of, torch.arange(len(row_of), device=device))
    head = model(input_ids=ids[first, :width], attention_mask=mask[first, :width], position_ids=position[first, :width],
                 logits_to_keep=1, output_hidden_states=want_hidden, use_cache=True)
    logits = [head.logits[row_of]]  # [N, 1, V]: the prompt's last column predicts response token 0
    hidden = [head.hidden_states[-1][row_of, -1:]] if want_hidden else []
    if t > 1:
        name = cache_argument(model)
        cache = cache_of(head)
        cache.batch_select_indices(row_of)  # [G, ...] -> [N, ...], differentiable
        # the last response token predicts nothing, so responses feed columns 0 .. T-2
        out = model(input_ids=ids[:, width:width + t - 1], attention_mask=mask[:, :width + t - 1],
                    position_ids=position[:, width:width + t - 1], use_cache=True,
                    output_hidden_states=want_hidden, **{name: cache})
        logits.append(out.logits)  # [N, T - 1, V]
        if want_hidden:
            hidden.append(out.hidden_states[-1])
    return torch.cat(logits, 1), torch.cat(hidden, 1) if want_hidden else None


class RolloutCopy:
    """A plain copy of the policy in the compute dtype that rollouts sample from, refreshed before each rollout.

    Why: decoding through an unmerged LoRA adapter adds two small matmuls (and dtype casts) to every
    projection of every decode step, and full fine-tuning keeps fp32 master weights; a merged copy in the
    compute dtype samples ~1.3-1.5x faster on a CPU. Merging into the policy and unmerging afterwards would
    instead drift the frozen bf16 base weights, which are also the KL reference, by rounding each step.
    Costs one more copy of the weights in memory (``rollout_copy: false`` trades it back for speed).
    """

    def __init__(self, policy: Any, dtype: torch.dtype):
        import copy

        self.lora = hasattr(policy, "peft_config")
        plain = copy.deepcopy(policy).merge_and_unload() if self.lora else copy.deepcopy(policy)
        self.model = plain.to(dtype).eval().requires_grad_(False)
        if self.lora:
            from peft.tuners.lora import LoraLayer

            # peft names a wrapped module "base_model.model.<name>"; the merged copy calls it "<name>"
            self._pairs = [(mod, self.model.get_submodule(name.removeprefix("base_model.model.")))
                           for name, mod in policy.named_modules() if isinstance(mod, LoraLayer)]
        else:
            self._pairs = list(zip(policy.parameters(), self.model.parameters(), strict=True))

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the current trained weights in (LoRA: W + scale * B @ A, computed in fp32)."""
        if not self.lora:
            for src, dst in self._pairs:
                dst.copy_(src)
            return
        for layer, dst in self._pairs:
            dst.weight.copy_(_merged_weight(layer))


def _merged_weight(layer: Any) -> torch.Tensor:
    """W + sum of scale * B @ A over the active adapters, in fp32 (peft's merge, without merging in place).

    A plain LoRA linear adds each adapter with one fused ``addmm`` (bit-identical after the cast to bf16;
    0.09 against 0.15 s per sync of SmolLM2 on 2 cores); anything else (DoRA, transposed or biased adapters,
    other layer types) goes through peft's own ``get_delta_weight``.
    """
    merged = layer.base_layer.weight.to(torch.float32, copy=True)  # a copy even from fp32: the adds are in place
    plain = isinstance(layer.base_layer, torch.nn.Linear) and not getattr(layer, "fan_in_fan_out", False)
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        if plain and not layer.use_dora.get(name, False) and not getattr(layer, "lora_bias", {}).get(name, False):
            b, a = layer.lora_B[name].weight, layer.lora_A[name].weight  # [out, r], [r, in]
            merged.addmm_(b.float(), a.float(), alpha=layer.scaling[name])
        else:
            merged = merged + layer.get_delta_weight(name).float()
    return merged
