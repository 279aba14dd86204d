"""Token-level reward-guided decoding (``args``, ARGS: Khanov et al., ICLR 2024).

At every step the top-k next tokens by logit are rescored as ``logit + w * (LCB_R - cost_weight * mu_C)`` of
the prefix they would make, and the next token is the argmax (greedy) or a draw from softmax(score / tau).
That is k scorer calls per token per scorer, so it is meant for GPUs; on a CPU it is correct but slow.
``w = 0`` is plain greedy / top-k sampling. The finished response passes the same cost screen as every
other decoder (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from safealign.config import option, require
from safealign.data.records import Message
from safealign.decode.base import Candidate, Decoder, DecoderConfig, Meter, Outcome, prompt_seed


@dataclass
class ArgsConfig(DecoderConfig):
    """ARGS token-level guidance (needs an engine with ``.model``: HFEngine)."""

    top_k: int = option(10, help="candidate next tokens rescored per step (k scorer calls per token and scorer)")
    weight: float = option(1.0, help="w in logit + w * guidance; 0 recovers greedy / top-k sampling")
    cost_weight: float = option(1.0, help="lambda in guidance = LCB_R - lambda * mu_C (prefix scores)")
    mode: Literal["greedy", "sample"] = option("greedy", help="argmax of the guided score, or a draw")
    temperature: float = option(0.7, help="tau of softmax(score / tau) in sample mode")

    def validate(self) -> None:
        super().validate()
        require(self.top_k >= 1, "top_k must be >= 1")
        require(self.weight >= 0, "weight must be >= 0")
        require(self.cost_weight >= 0, "cost_weight must be >= 0")
        require(self.temperature > 0, "temperature must be > 0")


class ArgsDecoder(Decoder):
    """ARGS with a KV cache over the single chosen path (the candidates are scored, not run through the LM)."""

    name = "args"
    config_class = ArgsConfig

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if not hasattr(self.engine, "model") or not hasattr(self.engine, "encode"):
            raise TypeError("decoder 'args' needs a transformers engine (HFEngine) exposing .model and .encode")

    @torch.no_grad()
    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: ArgsConfig = self.cfg  # type: ignore[assignment]
        eng: Any = self.engine
        model, tok = eng.model, eng.tokenizer
        stops = set(getattr(eng, "stop_ids", [tok.eos_token_id]))
        cache_arg = getattr(eng, "_cache_arg", "past_key_values")
        device = next(model.parameters()).device
        gen = torch.Generator(device="cpu").manual_seed(prompt_seed(messages, meter.seed))
        ids = eng.encode([messages], self.sampling)[0]
        inp = torch.tensor([ids], device=device)  # [1, T]
        past = None
        out_ids: list[int] = []
        finish = "length"
        for _ in range(self.sampling.max_new_tokens):
            kw = {cache_arg: past} if past is not None else {}
            out = model(input_ids=inp, use_cache=True, **kw)
            past = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            logits = out.logits[0, -1].float().cpu()  # [V]
            vals, idx = torch.topk(logits, min(cfg.top_k, logits.shape[-1]))  # [k], [k]
            score = vals.clone()
            if cfg.weight != 0:
                cands = []
                for v in idx.tolist():
                    path = out_ids + [v]
                    text_ids = out_ids if v in stops else path
                    cands.append(Candidate(tok.decode(text_ids, skip_special_tokens=True), path,
                                           "eos" if v in stops else "length"))
                self.score(messages, cands, meter, prefix=[v not in stops for v in idx.tolist()])
                guide = torch.tensor([
                    (c.reward - cfg.kappa_reward * c.reward_std if self.reward is not None else 0.0)
                    - cfg.cost_weight * (c.cost if self.cost is not None else 0.0) for c in cands])
                score = vals + cfg.weight * guide  # [k]
            if cfg.mode == "greedy":
                pick = int(torch.argmax(score))
            else:
                pick = int(torch.multinomial(torch.softmax(score / cfg.temperature, -1), 1, generator=gen))
            v = int(idx[pick])
            out_ids.append(v)
            meter.tokens_sampled += 1
            meter.rounds += 1
            if v in stops:
                finish = "eos"
                break
            inp = torch.tensor([[v]], device=device)
        meter.n_candidates += 1
        final = Candidate(tok.decode(out_ids, skip_special_tokens=True), out_ids, finish)
        self.score(messages, [final], meter)
        return self.outcome_of([final], self.select([final]))
