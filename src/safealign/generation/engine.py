"""Batched sampling for chat prompts: text, token ids and per-token log-probs of every sampled token.

:class:`Engine` is the interface every rollout and decoding strategy uses; :class:`HFEngine` runs any
transformers causal LM (a hand-written KV-cache loop, so we get log-probs without keeping full logits
for every step) and :mod:`safealign.generation.vllm_engine` implements the same interface on vLLM.
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from safealign.config import ConfigBase, option, require
from safealign.data.records import Message
from safealign.generation.llama_decoder import LlamaDecoder
from safealign.generation.llama_decoder import supports as lean_decode_applies


@dataclass
class SamplingConfig(ConfigBase):
    """How responses are sampled."""

    max_new_tokens: int = option(128, help="maximum number of tokens generated per response")
    temperature: float = option(0.7, help="softmax temperature; 0 means greedy decoding")
    top_p: float = option(0.95, help="nucleus sampling mass (1 disables it)")
    top_k: int = option(0, help="keep only the k most likely tokens (0 disables it)")
    n: int = option(1, help="responses sampled per prompt")
    batch_size: int = option(16, help="sequences decoded together (prompts x n are split into such batches)")
    max_prompt_tokens: int = option(512, help="longer prompts are truncated from the left (the start of a dialogue)")
    seed: int = option(0, help="random seed; the same seed and inputs give the same samples")
    system_prompt: str | None = option(
        None, help="system message prepended to prompts without one (None keeps the chat template's default)")

    def validate(self) -> None:
        require(self.max_new_tokens >= 1, "max_new_tokens must be >= 1")
        require(self.temperature >= 0, "temperature must be >= 0")
        require(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        require(self.top_k >= 0, "top_k must be >= 0")
        require(self.n >= 1, "n must be >= 1")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.max_prompt_tokens >= 8, "max_prompt_tokens must be >= 8")


@dataclass
class Generation:
    """One sampled response."""

    prompt_index: int
    text: str
    token_ids: list[int]  # sampled tokens; ends with the stop token when finish_reason == "eos"
    logprobs: list[float]  # log p(token | context) under the model at temperature 1, one per token
    finish_reason: str  # "eos" | "length"
    prompt_tokens: int
    meta: dict = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclass
class GenerationStats:
    prompts: int = 0
    sequences: int = 0
    new_tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0


class Engine(abc.ABC):
    """Generates ``cfg.n`` responses for each chat prompt; ``prefixes`` continue partial responses."""

    tokenizer: Any
    last_stats: GenerationStats

    @abc.abstractmethod
    def generate(
        self,
        prompts: Sequence[list[Message]],
        cfg: SamplingConfig,
        prefixes: Sequence[str] | None = None,
        progress: bool = False,
    ) -> list[list[Generation]]:
        """Return ``out[i][j]``: the j-th sample for prompt i (``len(out[i]) == cfg.n``)."""


def render_prompt(tokenizer: Any, messages: list[Message], system_prompt: str | None = None) -> str:
    """Chat-template text that ends where the assistant's answer begins."""
    if system_prompt is not None and not (messages and messages[0]["role"] == "system"):
        messages = [{"role": "system", "content": system_prompt}, *messages]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Base models without a template: a plain transcript.
    body = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages)
    return body + "Assistant:"


NUCLEUS_CANDIDATES = 256  # tokens searched for the top-p nucleus before falling back to a full sort
# Sequences decoded together by offline generation (scorer data, warm-start answers): on a 2-core CPU, 64
# gave 1.35-1.5x the sequences/s of 32, and 128 was slower again (session 8).
OFFLINE_BATCH_SIZE = 64


def _nucleus_sorted(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
    probs = sorted_logits.softmax(-1)
    # drop a token when the mass strictly before it already reaches top_p (always keeps the first)
    drop = (probs.cumsum(-1) - probs) >= top_p
    return torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits.masked_fill(drop, float("-inf")))


def nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits [B, V] with every token outside the top-p nucleus set to -inf.

    Why not just sort: sorting [32, 49152] logits costs ~85 ms per decode step on 2 cores, more than the
    model's forward. The nucleus is looked for among the ``NUCLEUS_CANDIDATES`` most likely tokens (~5 ms);
    a row whose candidates hold less than ``top_p`` of the mass is sorted in full, so the result is exact.
    """
    k = min(NUCLEUS_CANDIDATES, logits.shape[-1])
    top, idx = logits.softmax(-1).topk(k, dim=-1)  # [B, k] probabilities, descending
    drop = (top.cumsum(-1) - top) >= top_p  # [B, k]
    out = torch.full_like(logits, float("-inf")).scatter(-1, idx, logits.gather(-1, idx).masked_fill(drop, float("-inf")))
    short = top.sum(-1) < top_p  # [B] rows whose nucleus reaches past the candidates
    if bool(short.any()):
        out[short] = _nucleus_sorted(logits[short], top_p)
    return out


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> torch.Tensor:
    """Pick one token per row. logits: [B, V] float32 -> [B] int64."""
    return sample_with_logprob(logits, cfg, generator)[0]


# vocabulary block of the two-level draw: 49152 = 192 blocks of 256
_DRAW_BLOCK = 256


def sample_with_logprob(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row and its log-probability under the *untempered* logits: [B, V] float32 -> [B], [B].

    The draw is an inverse-CDF search in two levels: a uniform picks a block of ``_DRAW_BLOCK`` tokens by the
    blocks' cumulative mass, then a token inside it by the block's. The same uniform lands on the same token
    as one search over the whole vocabulary (up to the rounding of the sums), but two cumulative sums of a few
    hundred entries replace one of 49k: with the log-probability taken from the same normaliser, 0.4 against
    1.5 ms per decode step at batch 8 and 2.1 against 12 ms at 64 on 2 cores (the long sequential scan was
    the sampler's slowest op; torch.multinomial's exponential sampler is slower still).
    """
    raw = logits
    if cfg.temperature == 0:
        nxt = logits.argmax(-1)
        return nxt, raw.gather(1, nxt[:, None]).squeeze(1) - torch.logsumexp(raw, -1)
    logits = logits / cfg.temperature if cfg.temperature != 1.0 else logits
    if cfg.top_k > 0:
        kth = torch.topk(logits, min(cfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p < 1.0:
        logits = nucleus(logits, cfg.top_p)
    bsz, vocab = logits.shape
    peak = logits.max(-1, keepdim=True).values  # [B, 1]
    weight = (logits - peak).exp_()  # [B, V] unnormalised probabilities
    n_blocks = -(-vocab // _DRAW_BLOCK)
    if n_blocks * _DRAW_BLOCK != vocab:
        weight = torch.nn.functional.pad(weight, (0, n_blocks * _DRAW_BLOCK - vocab))
    blocks = weight.view(bsz, n_blocks, _DRAW_BLOCK)
    mass = blocks.sum(-1)  # [B, n_blocks]
    upto = mass.cumsum(-1)  # [B, n_blocks]
    u = torch.rand(bsz, 1, generator=generator, dtype=weight.dtype) * upto[:, -1:]  # [B, 1]
    blk = torch.searchsorted(upto, u, right=True).clamp(max=n_blocks - 1)  # [B, 1] first block past u
    inside = blocks[torch.arange(bsz), blk[:, 0]].cumsum(-1)  # [B, BLOCK]
    rest = u - (upto.gather(1, blk) - mass.gather(1, blk))  # [B, 1] mass left to walk inside the block
    # kept in [0, the block's own total), so the search always stops on a token of positive mass
    rest = torch.minimum(rest.clamp(min=0), inside[:, -1:].nextafter(torch.zeros((), dtype=inside.dtype)))
    nxt = (blk * _DRAW_BLOCK + torch.searchsorted(inside, rest, right=True)).squeeze(1)  # [B]
    if logits is raw:  # the sampling distribution is the model's: reuse its normaliser
        lse = peak.squeeze(1) + upto[:, -1].log()
    else:
        lse = torch.logsumexp(raw, -1)
    return nxt, raw.gather(1, nxt[:, None]).squeeze(1) - lse


class HFEngine(Engine):
    """Sampling on any transformers causal LM (plain, LoRA-wrapped, any device)."""

    def __init__(self, model: Any, tokenizer: Any, fast: bool = True, share_prefill: bool = True):
        from safealign.models.loading import contiguous_lm_head_input

        self.model = contiguous_lm_head_input(model)
        self.tokenizer = tokenizer
        self.fast = fast  # the lean Llama forward (llama_decoder.py) where it applies
        self.share_prefill = share_prefill  # rows with the same prompt (the n samples) prefill it once
        self.last_stats = GenerationStats()
        stops = {tokenizer.eos_token_id}
        gen_cfg = getattr(model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None)
        stops.update(eos if isinstance(eos, list) else [eos])
        self.stop_ids = sorted(t for t in stops if t is not None)
        params = forward_params(model)
        self._cache_arg = cache_argument(model)  # logits_to_keep (below) skips the prompt's logits
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in params else {}

    @classmethod
    def from_pretrained(cls, ref: str, dtype: str = "auto", device: str | None = None, **kw: Any) -> HFEngine:
        from safealign.models.loading import load_causal_lm, load_tokenizer

        return cls(load_causal_lm(ref, dtype=dtype, device=device, **kw), load_tokenizer(ref))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompts: Sequence[list[Message]], cfg: SamplingConfig,
               prefixes: Sequence[str] | None = None) -> list[list[int]]:
        out = []
        for i, msgs in enumerate(prompts):
            text = render_prompt(self.tokenizer, msgs, cfg.system_prompt)
            if prefixes is not None:
                text += prefixes[i]
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(ids[-cfg.max_prompt_tokens:])
        return out

    @torch.no_grad()
    def generate(self, prompts: Sequence[list[Message]], cfg: SamplingConfig,
                 prefixes: Sequence[str] | None = None, progress: bool = False) -> list[list[Generation]]:
        if prefixes is not None and len(prefixes) != len(prompts):
            raise ValueError(f"got {len(prefixes)} prefixes for {len(prompts)} prompts")
        start = time.perf_counter()
        encoded = self.encode(prompts, cfg, prefixes)
        jobs = [(i, j) for i in range(len(prompts)) for j in range(cfg.n)]
        # Longest first, so each batch holds similar lengths and the first batch shows the peak memory.
        jobs.sort(key=lambda ij: -len(encoded[ij[0]]))
        results: list[list[Generation | None]] = [[None] * cfg.n for _ in prompts]
        generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        was_training = self.model.training
        self.model.eval()
        new_tokens = 0
        # weights are read (and q|k|v, gate|up fused) once per call, so a model updated in between is current
        decoder = (LlamaDecoder(self.model, batch_hint=min(cfg.batch_size, len(jobs)))
                   if self.fast and lean_decode_applies(self.model) else None)
        bar = tqdm(total=len(jobs), desc="generate", unit="seq", disable=not progress, leave=False)
        try:
            for b in range(0, len(jobs), cfg.batch_size):
                chunk = jobs[b:b + cfg.batch_size]
                gens = self._generate_batch([encoded[i] for i, _ in chunk], cfg, generator, decoder)
                for (i, j), (ids, lps, reason) in zip(chunk, gens, strict=True):
                    text = self.tokenizer.decode(ids, skip_special_tokens=True)
                    results[i][j] = Generation(i, text, ids, lps, reason, len(encoded[i]), {"sample": j})
                    new_tokens += len(ids)
                bar.update(len(chunk))
        finally:
            bar.close()
            self.model.train(was_training)
        self.last_stats = GenerationStats(len(prompts), len(jobs), new_tokens, time.perf_counter() - start)
        return [[g for g in row if g is not None] for row in results]

    def _generate_batch(self, batch: list[list[int]], cfg: SamplingConfig, generator: torch.Generator,
                        decoder: LlamaDecoder | None) -> list[tuple[list[int], list[float], str]]:
        device = self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        width = max(len(x) for x in batch)
        bsz = len(batch)
        # The n samples of a prompt sit side by side in a batch; causal attention makes their prefill the same,
        # so each distinct prompt is prefilled once and its cache rows are copied (the same math, fewer tokens).
        distinct: dict[tuple[int, ...], int] = {}
        row_of = [distinct.setdefault(tuple(ids), len(distinct)) for ids in batch] if self.share_prefill else []
        prefill = [list(ids) for ids in distinct] if row_of and len(distinct) < bsz else batch
        input_ids = torch.full((len(prefill), width), pad, dtype=torch.long)
        attn = torch.zeros((len(prefill), width), dtype=torch.long)
        for r, ids in enumerate(prefill):  # left padding: every row's next token sits in the last column
            input_ids[r, width - len(ids):] = torch.tensor(ids)
            attn[r, width - len(ids):] = 1
        input_ids, attn = input_ids.to(device), attn.to(device)
        stepper = decoder or _HFStepper(self)
        stop = torch.tensor(self.stop_ids, device=device)
        logits = stepper.start(input_ids, attn, cfg.max_new_tokens)  # [G, V] float32
        if prefill is not batch:
            index = torch.tensor(row_of, device=device)  # [B] the prefilled row of each batch row
            stepper.select_rows(index)
            logits = logits[index]  # [B, V]
        done = torch.zeros(bsz, dtype=torch.bool, device=device)
        tokens: list[torch.Tensor] = []
        logps: list[torch.Tensor] = []
        alive: list[torch.Tensor] = []
        for _ in range(cfg.max_new_tokens):
            nxt, lp = sample_with_logprob(logits.cpu(), cfg, generator)  # [B], [B]
            nxt, lp = nxt.to(device), lp.to(device)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            alive.append(~done)
            tokens.append(nxt)
            logps.append(lp)
            done = done | torch.isin(nxt, stop)
            if bool(done.all()):
                break
            logits = stepper.step(nxt)
        tok = torch.stack(tokens, 1).cpu()  # [B, L]
        lps = torch.stack(logps, 1).float().cpu()
        live = torch.stack(alive, 1).cpu()
        results = []
        stop_set = set(self.stop_ids)
        for r in range(bsz):
            n = int(live[r].sum())
            ids = tok[r, :n].tolist()
            lp = lps[r, :n].tolist()
            if ids and ids[-1] in stop_set:
                results.append((ids, lp, "eos"))  # ids keep the stop token: stopping is a choice RL trains
            else:
                results.append((ids, lp, "length"))
        return results


class _HFStepper:
    """The generic path: transformers' own forward and KV cache (any architecture, PEFT-wrapped or not)."""

    def __init__(self, engine: HFEngine):
        self.engine = engine

    def start(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        self.attn = attention_mask
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        out = self.engine.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                use_cache=True, **self.engine._keep_last)
        self.past = cache_of(out)
        self.position = position_ids[:, -1:] + 1  # [B, 1]
        return out.logits[:, -1, :].float()  # [B, V]

    def select_rows(self, index: torch.Tensor) -> None:
        """Continue with these rows of the prefilled batch (index: [B'], repeats allowed)."""
        self.past.batch_select_indices(index)
        self.attn, self.position = self.attn[index], self.position[index]

    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        self.attn = torch.cat([self.attn, torch.ones_like(self.attn[:, :1])], dim=-1)
        out = self.engine.model(input_ids=next_ids[:, None], attention_mask=self.attn, position_ids=self.position,
                                use_cache=True, **{self.engine._cache_arg: self.past})
        self.past = cache_of(out)
        self.position = self.position + 1
        return out.logits[:, -1, :].float()


def forward_params(model: Any) -> set[str]:
    """The argument names of the model's forward, under a DDP or peft wrapper."""
    base = getattr(model, "module", model)
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    return set(inspect.signature(base.forward).parameters)


def cache_argument(model: Any) -> str:
    """The KV cache's argument name: transformers renamed past_key_values to cache in 5.x."""
    return "cache" if "cache" in forward_params(model) else "past_key_values"


def cache_of(out: Any) -> Any:
    """The KV cache of a forward's output, under either name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def build_engine(ref: str, backend: str = "hf", dtype: str = "auto", device: str | None = None, **kw: Any) -> Engine:
    """Engine factory used by the CLI: ``hf`` everywhere, ``vllm`` where vLLM is installed."""
    if backend == "hf":
        return HFEngine.from_pretrained(ref, dtype=dtype, device=device, **kw)
    if backend == "vllm":
        from safealign.generation.vllm_engine import VLLMEngine

        return VLLMEngine.from_pretrained(ref, dtype=dtype, **kw)
    raise ValueError(f"unknown generation backend '{backend}'; use 'hf' or 'vllm'")
