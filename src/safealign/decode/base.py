"""The Decoder interface: scorer-steered generation with a result that says what it cost.

Every strategy (best-of-N, rejection, guided search, ARGS, adaptive, guard) is a :class:`Decoder`:
``decoder.respond(prompts) -> list[DecodeResult]``, one result per prompt, with the final text, its scores,
and the bill (policy tokens sampled including discarded ones, scorer calls, wall time). Scorers follow
:mod:`safealign.scoring.base`: ``cost > 0`` is unsafe, ensembles give a mean and a std.

Fail closed (project rule): a scorer that raises or returns NaN, or a candidate set in which nothing passes
the safety rule, yields the configured refusal text, never an unscreened sample (``on_scorer_error='raise'``
re-raises instead). The selection rules are pure functions of score arrays so they can be tested with
known numbers.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from safealign.config import ConfigBase, ConfigError, option, require
from safealign.data.records import Message, prompt_text, user_prompt
from safealign.generation.engine import Engine, Generation, SamplingConfig
from safealign.scoring.base import PromptLike, Scorer, ScoringError

DEFAULT_REFUSAL = "I'm sorry, but I can't help with that request."

OnInfeasible = Literal["refuse", "least_cost_if_safe", "least_cost"]


class ScorerFailure(ScoringError):
    """A scorer raised or returned unusable numbers inside a decoder; decoders turn it into a refusal."""


# ---------------------------------------------------------------------------------------------- configs
@dataclass
class DecoderConfig(ConfigBase):
    """Options every decoder shares: the safety rule, the fallback and the refusal text."""

    max_cost: float = option(
        0.0, help="cost budget d: a candidate is feasible iff mu_C + kappa_cost * sigma_C <= max_cost "
                  "(inf disables the screen)")
    unsafe_threshold: float = option(
        0.0, help="cost above which a response is unsafe (tau); infeasible fallbacks above it are refused "
                  "unless on_infeasible='least_cost'")
    kappa_cost: float = option(
        0.0, help="std multiplier of the cost upper bound (0: mean only; 1.645: one-sided 95%% under Gaussian "
                  "error); a cost-ensemble's std makes the screen conservative")
    kappa_reward: float = option(
        0.0, help="std multiplier of the reward lower bound used for ranking (conservative ensemble, B3)")
    lam: float = option(
        0.0, help="ranking key among feasible candidates is LCB_R - lam * mu_C (0: constrained rule B2; "
                  "> 0 with max_cost=inf: Lagrangian best-of-N B1)")
    on_infeasible: OnInfeasible = option(
        "least_cost_if_safe",
        help="when no candidate is feasible: refuse; least_cost_if_safe (the lowest-cost candidate if its "
             "cost bound <= unsafe_threshold, else refuse); least_cost (always the lowest-cost one, even "
             "if unsafe: for analysis only)")
    on_scorer_error: Literal["refuse", "raise"] = option(
        "refuse", help="a scorer that raises or returns NaN: return the refusal (fail closed) or re-raise")
    refusal_text: str = option(DEFAULT_REFUSAL, help="safe refusal returned by every fail-closed path")
    keep_candidates: bool = option(
        False, help="attach every candidate (text, scores, tokens) to DecodeResult.candidates for analysis")

    def validate(self) -> None:
        require(not math.isnan(self.max_cost), "max_cost must be a number (inf disables the screen)")
        require(math.isfinite(self.unsafe_threshold), "unsafe_threshold must be finite")
        require(self.kappa_cost >= 0, "kappa_cost must be >= 0")
        require(self.kappa_reward >= 0, "kappa_reward must be >= 0")
        require(self.lam >= 0 and math.isfinite(self.lam), "lam must be a finite number >= 0")
        require(bool(self.refusal_text.strip()), "refusal_text must not be empty")


# ---------------------------------------------------------------------------------------------- results
@dataclass
class Candidate:
    """One scored candidate (a full response, or a block / partial response in segment search)."""

    text: str
    token_ids: list[int]
    finish_reason: str  # "eos" | "length"
    reward: float = float("nan")
    reward_std: float = 0.0
    cost: float = float("nan")
    cost_std: float = 0.0
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "tokens": len(self.token_ids), "finish_reason": self.finish_reason,
                "reward": _num(self.reward), "reward_std": _num(self.reward_std), "cost": _num(self.cost),
                "cost_std": _num(self.cost_std), **self.meta}


@dataclass
class DecodeResult:
    """What a decoder returns for one prompt: the text, its scores, and what producing it cost."""

    prompt: str
    text: str
    decoder: str
    reward: float | None = None  # scores of the returned text (None when it was not scored, e.g. a refusal)
    cost: float | None = None
    reward_std: float | None = None
    cost_std: float | None = None
    tokens_sampled: int = 0  # policy tokens generated, discarded candidates and blocks included
    scorer_calls: int = 0  # (prompt, text) pairs sent to scorers, summed over the reward and cost scorers
    scored_tokens: int = 0  # policy tokens in those texts (the scorers' work, in policy tokens)
    seconds: float = 0.0  # wall time for this prompt (amortised over a batch where prompts share one)
    n_candidates: int = 0  # responses (or blocks, for segment decoders) drawn
    rounds: int = 0  # sampling rounds (batches, search steps, guard rounds)
    refused: bool = False  # the text is the configured refusal
    fallback: str | None = None  # None | "least_cost" | "refusal" | "scorer_error" | "least_severe"
    screened: bool = False  # the returned text itself passed the safety rule of the scorers
    reason: str = ""
    finish_reason: str = ""
    token_ids: list[int] = field(default_factory=list)
    candidates: list[dict] | None = None
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("token_ids")
        for k in ("reward", "cost", "reward_std", "cost_std"):
            out[k] = _num(out[k])
        if out["candidates"] is None:
            out.pop("candidates")
        return out


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


# ---------------------------------------------------------------------------------------------- selection rules
@dataclass(frozen=True)
class Selection:
    """Outcome of :func:`select_candidate`: ``index`` None means "return the refusal"."""

    index: int | None
    feasible: bool  # the chosen candidate passed the cost screen
    fallback: str | None  # None | "least_cost" | "refusal"


def feasible_mask(cost_mu: np.ndarray, cost_sd: np.ndarray, max_cost: float, kappa: float) -> np.ndarray:
    """Feasible iff the cost upper bound mu_C + kappa sigma_C is <= max_cost. [N] -> bool [N]."""
    return np.asarray(cost_mu, float) + kappa * np.asarray(cost_sd, float) <= max_cost


def select_candidate(
    reward_mu: Sequence[float] | np.ndarray,
    reward_sd: Sequence[float] | np.ndarray,
    cost_mu: Sequence[float] | np.ndarray,
    cost_sd: Sequence[float] | np.ndarray,
    *,
    max_cost: float = 0.0,
    unsafe_threshold: float = 0.0,
    kappa_cost: float = 0.0,
    kappa_reward: float = 0.0,
    lam: float = 0.0,
    on_infeasible: OnInfeasible = "least_cost_if_safe",
) -> Selection:
    """Best-of-N selection: argmax of LCB_R - lam mu_C among feasible candidates, else the fallback.

    All arrays have shape [N]. Ties go to the earliest candidate (deterministic). With no feasible
    candidate: ``refuse`` -> index None; ``least_cost_if_safe`` -> argmin of the cost bound if that bound is
    <= unsafe_threshold, else None; ``least_cost`` -> argmin of the cost bound regardless.
    """
    r_mu, r_sd = np.asarray(reward_mu, float), np.asarray(reward_sd, float)
    c_mu, c_sd = np.asarray(cost_mu, float), np.asarray(cost_sd, float)
    if not (r_mu.shape == r_sd.shape == c_mu.shape == c_sd.shape) or r_mu.ndim != 1:
        raise ValueError("reward and cost arrays must all have the same shape [N]")
    if len(r_mu) == 0:
        return Selection(None, False, "refusal")
    feasible = feasible_mask(c_mu, c_sd, max_cost, kappa_cost)
    if feasible.any():
        key = np.where(feasible, r_mu - kappa_reward * r_sd - lam * c_mu, -np.inf)
        return Selection(int(np.argmax(key)), True, None)
    bound = c_mu + kappa_cost * c_sd
    j = int(np.argmin(bound))
    if on_infeasible == "least_cost" or (on_infeasible == "least_cost_if_safe" and bound[j] <= unsafe_threshold):
        return Selection(j, False, "least_cost")
    return Selection(None, False, "refusal")


# ---------------------------------------------------------------------------------------------- accounting
@dataclass
class Meter:
    """Per-prompt bill, filled in by the decoder while it works."""

    tokens_sampled: int = 0
    scorer_calls: int = 0
    scored_tokens: int = 0
    n_candidates: int = 0
    rounds: int = 0
    sample_calls: int = 0  # engine calls so far (varies the seed of each call)
    seed: int = 0  # base seed of this prompt's decoding (see Decoder.respond)


@dataclass
class Outcome:
    """What ``decode_one`` hands back to :meth:`Decoder.respond` (which adds the bill and timing)."""

    candidate: Candidate | None  # None: return the refusal
    screened: bool
    fallback: str | None = None
    reason: str = ""
    candidates: list[Candidate] | None = None
    meta: dict = field(default_factory=dict)


def as_messages(prompt: PromptLike) -> list[Message]:
    """Accept a plain user prompt or a chat message list."""
    return user_prompt(prompt) if isinstance(prompt, str) else list(prompt)


def prompt_seed(messages: list[Message], base: int) -> int:
    """Seed from the prompt's text, so a prompt gets the same samples wherever it sits in a batch."""
    digest = hashlib.sha256(f"{base}\x00{prompt_text(messages)}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


class Decoder(abc.ABC):
    """Base class: per-prompt loop, accounting, fail-closed handling of scorer errors.

    Subclasses set ``name`` and ``config_class`` and implement :meth:`decode_one`. ``needs`` lists the
    scorers a decoder cannot run without ("reward", "cost").
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[DecoderConfig]] = DecoderConfig
    needs: ClassVar[tuple[str, ...]] = ("reward", "cost")

    def __init__(self, engine: Engine, reward: Scorer | None = None, cost: Scorer | None = None,
                 config: DecoderConfig | Mapping[str, Any] | None = None,
                 sampling: SamplingConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        elif isinstance(config, Mapping):
            config = self.config_class.from_dict(config, where=f"decoder '{self.name}'")
        if not isinstance(config, self.config_class):
            raise ConfigError(f"decoder '{self.name}' needs a {self.config_class.__name__}, "
                              f"got {type(config).__name__}")
        missing = [k for k, s in (("reward", reward), ("cost", cost)) if k in self.needs and s is None]
        if missing:
            raise ValueError(f"decoder '{self.name}' needs a {' and a '.join(missing)} scorer")
        self.engine, self.reward, self.cost = engine, reward, cost
        self.cfg = config
        self.sampling = sampling or SamplingConfig()

    # ------------------------------------------------------------------ public API
    def respond(self, prompts: Sequence[PromptLike], progress: bool = False,
                seed: int | None = None) -> list[DecodeResult]:
        """One :class:`DecodeResult` per prompt, in order.

        Samples depend on the prompt text and ``seed`` only (not on batch position). Without ``seed``, the
        k-th call of this decoder uses ``sampling.seed + k``, so calling ``respond`` n times gives n
        independent results per prompt and a fresh decoder replays the same sequence.
        """
        base = self._next_seed(seed)
        out = []
        for p in tqdm(prompts, desc=self.name, unit="prompt", disable=not progress, leave=False):
            out.append(self._respond_one(as_messages(p), base))
        return out

    def _next_seed(self, seed: int | None) -> int:
        calls = getattr(self, "_respond_calls", 0)
        self._respond_calls = calls + 1
        return seed if seed is not None else self.sampling.seed + calls

    def _respond_one(self, messages: list[Message], base_seed: int) -> DecodeResult:
        meter = Meter(seed=base_seed)
        start = time.perf_counter()
        try:
            outcome = self.decode_one(messages, meter)
        except ScorerFailure as err:
            if self.cfg.on_scorer_error == "raise":
                raise
            outcome = Outcome(None, False, "scorer_error", f"scorer error: {err}")
        return self._finish(messages, outcome, meter, time.perf_counter() - start)

    def _finish(self, messages: list[Message], o: Outcome, meter: Meter, seconds: float) -> DecodeResult:
        c = o.candidate
        common = dict(prompt=prompt_text(messages), decoder=self.name, tokens_sampled=meter.tokens_sampled,
                      scorer_calls=meter.scorer_calls, scored_tokens=meter.scored_tokens, seconds=seconds,
                      n_candidates=meter.n_candidates, rounds=meter.rounds, reason=o.reason,
                      candidates=[x.to_dict() for x in o.candidates] if (self.cfg.keep_candidates
                                                                        and o.candidates) else None,
                      meta={"threads": torch.get_num_threads(), **o.meta})
        if c is None:
            return DecodeResult(text=self.cfg.refusal_text, refused=True, screened=False,
                                fallback=o.fallback or "refusal", finish_reason="refusal", **common)
        return DecodeResult(text=c.text, reward=_num(c.reward), cost=_num(c.cost), reward_std=_num(c.reward_std),
                            cost_std=_num(c.cost_std), screened=o.screened, fallback=o.fallback,
                            finish_reason=c.finish_reason, token_ids=list(c.token_ids), **common)

    @abc.abstractmethod
    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        """Decode one prompt; raise :class:`ScorerFailure` (via :meth:`score`) to fail closed."""

    # ------------------------------------------------------------------ helpers for subclasses
    def sample(self, messages: list[Message], meter: Meter, n: int, max_new_tokens: int | None = None,
               prefixes: Sequence[str] | None = None, system_prompt: str | None = None,
               prompts: Sequence[list[Message]] | None = None) -> list[list[Generation]]:
        """Draw ``n`` continuations per prefix (one prompt, or one row per prefix); bills the tokens.

        Each call gets its own seed derived from the prompt text and a call counter, so repeated calls
        (rejection rounds, blocks, regenerations) draw fresh samples but the run stays reproducible.
        """
        rows = prompts if prompts is not None else [messages] * (len(prefixes) if prefixes is not None else 1)
        over: dict[str, Any] = {"n": n, "seed": (prompt_seed(messages, meter.seed) + meter.sample_calls) % 2**31}
        if max_new_tokens is not None:
            over["max_new_tokens"] = max_new_tokens
        if system_prompt is not None:
            over["system_prompt"] = system_prompt
        cfg = dataclasses.replace(self.sampling, **over)
        meter.sample_calls += 1
        out = self.engine.generate(list(rows), cfg, prefixes=list(prefixes) if prefixes is not None else None)
        meter.tokens_sampled += sum(g.num_tokens for row in out for g in row)
        return out

    def score(self, messages: list[Message], cands: Sequence[Candidate], meter: Meter,
              prefix: bool | Sequence[bool] = False) -> None:
        """Fill reward/cost (mean, std) of each candidate in place; ``prefix`` marks unfinished texts.

        Unfinished texts go to ``score_prefixes`` (process scorers), finished ones to ``score``. Any
        exception, a wrong shape, a NaN or a negative std raises :class:`ScorerFailure`.
        """
        if not cands:
            return
        flags = [prefix] * len(cands) if isinstance(prefix, bool) else list(prefix)
        for kind, scorer in (("reward", self.reward), ("cost", self.cost)):
            if scorer is None:
                continue
            for is_prefix in (False, True):
                idx = [i for i, f in enumerate(flags) if f == is_prefix]
                if not idx:
                    continue
                texts = [cands[i].text for i in idx]
                fn = scorer.score_prefixes if is_prefix else scorer.score
                try:
                    s = fn([messages] * len(texts), texts)
                    mean = np.asarray(s.mean, float).reshape(-1)
                    std = np.asarray(s.std, float).reshape(-1)
                except Exception as err:  # noqa: BLE001 - any scorer failure must fail closed
                    raise ScorerFailure(f"{kind} scorer raised {type(err).__name__}: {err}") from err
                if mean.shape != (len(texts),) or std.shape != (len(texts),):
                    raise ScorerFailure(f"{kind} scorer returned {mean.shape[0]} scores for {len(texts)} texts")
                if not (np.isfinite(mean).all() and np.isfinite(std).all()) or (std < 0).any():
                    raise ScorerFailure(f"{kind} scorer returned NaN/inf or a negative std")
                meter.scorer_calls += len(texts)
                meter.scored_tokens += sum(len(cands[i].token_ids) for i in idx)
                for j, i in enumerate(idx):
                    setattr(cands[i], kind, float(mean[j]))
                    setattr(cands[i], f"{kind}_std", float(std[j]))

    def select(self, cands: Sequence[Candidate]) -> Selection:
        """:func:`select_candidate` with this decoder's config."""
        c = self.cfg
        return select_candidate([x.reward if self.reward is not None else 0.0 for x in cands],
                                [x.reward_std if self.reward is not None else 0.0 for x in cands],
                                [x.cost for x in cands], [x.cost_std for x in cands],
                                max_cost=c.max_cost, unsafe_threshold=c.unsafe_threshold, kappa_cost=c.kappa_cost,
                                kappa_reward=c.kappa_reward, lam=c.lam, on_infeasible=c.on_infeasible)

    def outcome_of(self, cands: list[Candidate], sel: Selection, reason: str = "") -> Outcome:
        """Turn a selection into an Outcome; a least-cost fallback counts as screened only below tau."""
        if sel.index is None:
            return Outcome(None, False, sel.fallback, reason or "no candidate passed the cost screen", cands)
        chosen = cands[sel.index]
        screened = sel.feasible or (chosen.cost + self.cfg.kappa_cost * chosen.cost_std <= self.cfg.unsafe_threshold)
        if sel.fallback and not reason:
            reason = "no candidate within max_cost; returned the lowest-cost one"
        return Outcome(chosen, screened, sel.fallback, reason, cands)

    def candidates_from(self, gens: Sequence[Generation], heads: Sequence[list[int]] | None = None) -> list[Candidate]:
        """Candidates from generations; ``heads`` are token ids already accepted before each generation.

        Texts are decoded from the whole id list so a multi-byte character split across blocks is intact.
        """
        tok = self.engine.tokenizer
        out = []
        for k, g in enumerate(gens):
            ids = (list(heads[k]) if heads is not None else []) + list(g.token_ids)
            text = tok.decode(ids, skip_special_tokens=True) if heads is not None else g.text
            out.append(Candidate(text, ids, g.finish_reason, meta={"new_tokens": g.num_tokens}))
        return out
