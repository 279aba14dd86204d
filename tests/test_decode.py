"""Decoders: selection rules, the adaptive stopping rule, the guard's fail-closed paths.

A tiny random 2-layer Llama with the real SmolLM2 tokenizer generates; fake scorers return known scores
(from a queue in call order, or as a function of the text), so every decision is checked against numbers.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import pytest
import scipy.stats
import torch

from safealign.config import ConfigError
from safealign.data.records import user_prompt
from safealign.decode import (
    DEFAULT_REFUSAL,
    DecodingConfig,
    ScorerFailure,
    adaptive_stop,
    best_of_n_expectation,
    build_decoder,
    choose_lambda,
    kl_best_of_n,
    select_candidate,
    severity_levels,
)
from safealign.generation import HFEngine, SamplingConfig
from safealign.generation.engine import Engine
from safealign.scoring.base import Scorer, Scores

PROMPT = "How do I pick a lock?"
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0, top_p=1.0, batch_size=16)


# ------------------------------------------------------------------------------------------ fakes
class QueueScorer(Scorer):
    """Returns queued (mean, std) pairs in the order texts are scored; the last one repeats."""

    def __init__(self, kind: str, values: Sequence[tuple[float, float]]):
        self.kind = kind  # type: ignore[assignment]
        self.values = list(values)
        self.pos = 0
        self.calls: list[tuple[str, bool]] = []  # (text, prefix?)

    def _next(self, texts: Sequence[str], prefix: bool) -> Scores:
        out = []
        for t in texts:
            out.append(self.values[min(self.pos, len(self.values) - 1)])
            self.pos += 1
            self.calls.append((t, prefix))
        return Scores([m for m, _ in out], [s for _, s in out])

    def score(self, prompts, responses):
        return self._next(responses, False)

    def score_prefixes(self, prompts, partial_responses):
        return self._next(partial_responses, True)


class FnScorer(Scorer):
    """Score = fn(text), std = sd(text); counts the pairs it sees."""

    def __init__(self, kind: str, fn: Callable[[str], float], sd: Callable[[str], float] = lambda t: 0.0):
        self.kind = kind  # type: ignore[assignment]
        self.fn, self.sd, self.n = fn, sd, 0

    def score(self, prompts, responses):
        assert len(prompts) == len(responses)
        self.n += len(responses)
        return Scores([self.fn(t) for t in responses], [self.sd(t) for t in responses])


class BrokenScorer(Scorer):
    def __init__(self, kind: str, mode: str = "raise"):
        self.kind, self.mode = kind, mode  # type: ignore[assignment]

    def score(self, prompts, responses):
        if self.mode == "raise":
            raise RuntimeError("scorer server down")
        if self.mode == "nan":
            return Scores([float("nan")] * len(responses), [0.0] * len(responses))
        return Scores([0.0] * (len(responses) + 1), [0.0] * (len(responses) + 1))  # wrong length


class SpyEngine(Engine):
    """Wraps an engine and records every call (prompts, sampling config, prefixes)."""

    def __init__(self, inner: HFEngine):
        self.inner, self.tokenizer, self.calls = inner, inner.tokenizer, []

    def generate(self, prompts, cfg, prefixes=None, progress=False):
        self.calls.append((prompts, cfg, prefixes))
        out = self.inner.generate(prompts, cfg, prefixes, progress)
        self.last_stats = self.inner.last_stats
        return out


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread (and do not fight other jobs for the shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def engine(tiny_llama, smol_tokenizer) -> HFEngine:
    return HFEngine(tiny_llama, smol_tokenizer)


def safe(reward: float = 1.0, sd: float = 0.0):
    return (reward, sd)


# ------------------------------------------------------------------------------------------ pure rules
def test_constrained_selection_known_numbers():
    r, rs = [3.0, 5.0, 4.0, 9.0], [0.0] * 4
    c, cs = [-1.0, -0.5, -2.0, 1.0], [0.0] * 4
    s = select_candidate(r, rs, c, cs)  # 9.0 is infeasible: best feasible reward is 5.0
    assert (s.index, s.feasible, s.fallback) == (1, True, None)
    # a conservative cost bound (kappa * std) removes candidate 1
    s = select_candidate(r, rs, c, [0.0, 1.0, 0.0, 0.0], kappa_cost=1.0)
    assert s.index == 2
    # lambda ranks feasible ones by r - lam c: 3 + 2 = 5 < 5 + 1 = 6 < 4 + 4 = 8
    assert select_candidate(r, rs, c, cs, lam=2.0).index == 2
    # conservative reward: LCB 5 - 2 < 4
    assert select_candidate(r, [0.0, 2.0, 0.0, 0.0], c, cs, kappa_reward=1.0).index == 2
    # Lagrangian BoN (no screen): argmax 9 - 1 * 1 = 8
    assert select_candidate(r, rs, c, cs, max_cost=math.inf, lam=1.0).index == 3
    # ties go to the earliest candidate
    assert select_candidate([1.0, 1.0], [0, 0], [-1.0, -1.0], [0, 0]).index == 0


def test_infeasible_fallbacks():
    r, z = [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]
    c = [0.4, -0.5, -0.2]  # budget d = -1: nothing feasible; least cost -0.5 is still below tau = 0
    s = select_candidate(r, z, c, z, max_cost=-1.0)
    assert (s.index, s.feasible, s.fallback) == (1, False, "least_cost")
    assert select_candidate(r, z, c, z, max_cost=-1.0, on_infeasible="refuse").index is None
    unsafe = [0.4, 0.3, 2.0]  # even the least costly one is unsafe
    s = select_candidate(r, z, unsafe, z, max_cost=-1.0)
    assert (s.index, s.fallback) == (None, "refusal")
    s = select_candidate(r, z, unsafe, z, max_cost=-1.0, on_infeasible="least_cost")
    assert (s.index, s.fallback) == (1, "least_cost")
    assert select_candidate([], [], [], [], max_cost=0.0).index is None


def test_kl_best_of_n():
    assert kl_best_of_n(1) == 0.0
    assert kl_best_of_n(16) == pytest.approx(1.8351, abs=1e-4)


def test_best_of_n_estimator_matches_enumeration():
    rng = np.random.default_rng(0)
    keys, outcomes = rng.normal(size=10), rng.random(10)
    for n in (1, 2, 4, 7, 10):
        subsets = list(itertools.combinations(range(10), n))
        brute = np.mean([outcomes[max(s, key=lambda i: keys[i])] for s in subsets])
        assert best_of_n_expectation(keys, outcomes, n) == pytest.approx(brute)


def test_adaptive_stop_rule_known_numbers():
    k = 1.0
    # nothing certified safe (UCB_C = -0.2 + 0.5 > 0): keep sampling
    for rule in ("ei", "gain", "dominance"):
        d = adaptive_stop([1.0], [0.1], [-0.2], [0.5], kappa_cost=k, kappa_reward=k, price=10.0, rule=rule)
        assert (d.stop, d.best, d.gain) == (False, None, math.inf)
    # one certified-safe candidate with an unsure reward: gain = 2 kappa sigma = 0.6
    d = adaptive_stop([1.0], [0.3], [-1.0], [0.1], kappa_cost=k, kappa_reward=k, price=0.5, rule="gain")
    assert (d.stop, d.best) == (False, 0) and d.gain == pytest.approx(0.6)
    assert adaptive_stop([1.0], [0.3], [-1.0], [0.1], kappa_cost=k, kappa_reward=k, price=0.61, rule="gain").stop
    # dominance: LCB(best) = 2.0 - 0.2 = 1.8 >= UCB(rival) = 1.5 + 0.2 = 1.7 -> stop at price 0
    r, rs, c, cs = [2.0, 1.5], [0.2, 0.2], [-1.0, -1.0], [0.1, 0.1]
    d = adaptive_stop(r, rs, c, cs, kappa_cost=k, kappa_reward=k, price=0.0, rule="dominance")
    assert (d.stop, d.best, d.gain) == (True, 0, 0.0)
    # ... but not when the rival's UCB reaches above it (1.5 + 0.4 = 1.9 > 1.8)
    d = adaptive_stop(r, [0.2, 0.4], c, cs, kappa_cost=k, kappa_reward=k, price=0.0, rule="dominance")
    assert not d.stop and d.gain == pytest.approx(0.1)
    # gain rule on the same numbers: mean((2.2 - 1.8), (1.7 - 1.8)^+) = 0.2
    d = adaptive_stop(r, rs, c, cs, kappa_cost=k, kappa_reward=k, price=0.19, rule="gain")
    assert not d.stop and d.gain == pytest.approx(0.2)
    # a certified-unsafe candidate (LCB_C = 3 - 0.1 > 0) neither wins nor counts as a rival
    d = adaptive_stop([1.0, 9.0], [0.0, 0.0], [-1.0, 3.0], [0.0, 0.1], kappa_cost=k, kappa_reward=k,
                      price=0.0, rule="dominance")
    assert (d.stop, d.best) == (True, 0) and d.unsafe.tolist() == [False, True]
    # an uncertain rival (neither certified safe nor unsafe) with a high UCB_R keeps sampling going
    d = adaptive_stop([1.0, 0.5], [0.0, 1.0], [-1.0, 0.0], [0.0, 0.5], kappa_cost=k, kappa_reward=k,
                      price=0.1, rule="dominance")
    assert not d.stop and d.safe.tolist() == [True, False] and d.gain == pytest.approx(0.5)


def test_adaptive_stop_expected_improvement_rule():
    norm = scipy.stats.norm

    def ei(m, s, b):
        return (m - b) * norm.cdf((m - b) / s) + s * norm.pdf((m - b) / s)

    # one safe draw: m = 1, s = prior 1 (2 pseudo-draws), p = (1 + 1) / (1 + 2) -> G = 2/3 * phi(0)
    d = adaptive_stop([1.0], [0.0], [-1.0], [0.0], price=0.0)
    assert d.best == 0 and d.gain == pytest.approx(2 / 3 * norm.pdf(0.0))
    # two safe draws 1 and 0: m = 0.5, s^2 = (0.5 + 2) / 3, p = 3/4, bar = 1
    d = adaptive_stop([1.0, 0.0], [0.0, 0.0], [-1.0, -1.0], [0.0, 0.0], price=0.13)
    g = 0.75 * ei(0.5, math.sqrt(2.5 / 3), 1.0)
    assert d.gain == pytest.approx(g) and d.stop and g == pytest.approx(0.1256, abs=1e-4)
    # an unsure best (LCB = 1 - 1.645 * 0.5) raises the gain; an uncertain-cost draw lowers p
    unsure = adaptive_stop([1.0, 0.0], [0.5, 0.0], [-1.0, -1.0], [0.0, 0.0], price=0.13)
    assert unsure.gain > d.gain and not unsure.stop
    murky = adaptive_stop([1.0, 0.0], [0.0, 0.0], [-1.0, -0.1], [0.0, 0.5], price=0.13)
    assert murky.safe.tolist() == [True, False] and murky.gain == pytest.approx(2 / 4 * ei(0.5, math.sqrt(2.5 / 3), 1.0))


def test_adaptive_stop_sigma_zero_is_mean_rule():
    """U- (sigma = 0) equals the same rule on means: bit for bit the same decision."""
    rng = np.random.default_rng(1)
    r, c = rng.normal(size=6), rng.normal(size=6)
    a = adaptive_stop(r, np.zeros(6), c, np.zeros(6), kappa_cost=1.645, kappa_reward=1.645, price=0.1)
    b = adaptive_stop(r, np.zeros(6), c, np.zeros(6), kappa_cost=0.0, kappa_reward=0.0, price=0.1)
    assert (a.stop, a.best, a.gain) == (b.stop, b.best, b.gain)


def test_one_sided_bound_constant():
    assert scipy.stats.norm.cdf(-1.645) == pytest.approx(0.0500, abs=1e-4)


def test_choose_lambda_and_severity_levels():
    r, c = [5.0, 3.0, 1.0], [2.0, 0.5, -1.0]
    assert choose_lambda(r, c, c, 1, 0.0, [0.0, 1.0, 5.0]) == (5.0, [2])  # 5-10, 3-2.5, 1+5
    assert choose_lambda(r, c, c, 1, 3.0, [0.0, 1.0]) == (0.0, [0])
    assert choose_lambda(r, c, c, 3, 0.0, [0.0, 1.0])[0] == 1.0  # no lambda keeps 3 safe beams: the largest
    lv = severity_levels([-1.0, 0.5, 3.0, 9.0], 0.0, [2.0, 4.0])
    assert lv.tolist() == [0, 1, 2, 3]


# ------------------------------------------------------------------------------------------ decoders
def test_best_of_n_picks_best_feasible_and_bills(engine):
    reward = FnScorer("reward", lambda t: float(len(t)))
    cost = FnScorer("cost", lambda t: -1.0 if len(t) % 2 == 0 else 1.0)  # even length = safe
    dec = build_decoder("best_of_n", engine, reward=reward, cost=cost, config={"n": 6, "keep_candidates": True},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    cands = res.candidates
    assert res.n_candidates == 6 and len(cands) == 6 and res.scorer_calls == 12
    assert res.tokens_sampled == sum(c["tokens"] for c in cands)
    even = [c for c in cands if len(c["text"]) % 2 == 0]
    if even:
        assert res.text == max(even, key=lambda c: len(c["text"]))["text"] and res.screened and not res.refused
        assert res.cost == -1.0 and res.reward == float(len(res.text))
    else:
        assert res.refused
    json.dumps(res.to_dict())


def test_best_of_n_refuses_with_configured_text_when_nothing_is_safe(engine):
    reward, cost = QueueScorer("reward", [safe()]), QueueScorer("cost", [(2.0, 0.0)])
    dec = build_decoder("best_of_n", engine, reward=reward, cost=cost,
                        config={"n": 3, "refusal_text": "Sorry, no."}, sampling=SAMPLING)
    res = dec.respond([user_prompt(PROMPT)])[0]
    assert (res.text, res.refused, res.screened, res.fallback) == ("Sorry, no.", True, False, "refusal")
    assert res.tokens_sampled > 0 and res.reward is None


def test_rejection_stops_at_first_pass_and_respects_budget(engine):
    reward = QueueScorer("reward", [safe()])
    cost = QueueScorer("cost", [(1.0, 0.0)] * 3 + [(-1.0, 0.0)])  # the 4th candidate is the first safe one
    dec = build_decoder("rejection", engine, reward=reward, cost=cost, config={"batch": 2, "max_samples": 10},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.n_candidates == 4 and res.rounds == 2 and res.screened and res.cost == -1.0
    cost = QueueScorer("cost", [(1.0, 0.0)])
    dec = build_decoder("rejection", engine, reward=QueueScorer("reward", [safe()]), cost=cost,
                        config={"batch": 3, "max_samples": 7}, sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.n_candidates == 7 and res.rounds == 3 and res.refused and res.text == DEFAULT_REFUSAL


def test_adaptive_stops_early_when_confident(engine):
    reward = QueueScorer("reward", [(2.0, 0.01)])
    cost = QueueScorer("cost", [(-3.0, 0.1)])
    dec = build_decoder("adaptive", engine, reward=reward, cost=cost,
                        config={"batch": 1, "max_samples": 16, "price": 0.1, "prior_std": 0.1}, sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    # G = 2/3 * E[(X - 1.98)^+], X ~ N(1.98, 0.1^2) = 2/3 * 0.1 * 0.399 = 0.027 <= 0.1
    assert res.n_candidates == 1 and res.screened and res.meta["stopped_early"]
    assert res.tokens_sampled <= SAMPLING.max_new_tokens


def test_adaptive_keeps_sampling_while_scorers_are_unsure(engine):
    # every candidate is probably safe (mu_C = -0.5) but not certified (UCB_C = -0.5 + 1.645 > 0)
    reward, cost = QueueScorer("reward", [(1.0, 0.1)]), QueueScorer("cost", [(-0.5, 1.0)])
    dec = build_decoder("adaptive", engine, reward=reward, cost=cost,
                        config={"batch": 2, "max_samples": 6, "on_infeasible": "refuse", "kappa_cost": 1.645},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.n_candidates == 6 and res.refused  # budget spent, nothing certified: fail closed
    # an unsure reward on a safe best keeps it going until a confident candidate arrives (the 5th)
    reward = QueueScorer("reward", [(1.0, 1.0)] * 4 + [(1.0, 0.0)])
    cost = QueueScorer("cost", [(-3.0, 0.0)])
    dec = build_decoder("adaptive", engine, reward=reward, cost=cost,
                        config={"batch": 1, "max_samples": 16, "price": 0.5, "rule": "gain", "kappa_reward": 1.645},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    # gain after n >= 5 draws: the 4 unsure ones keep UCB_R - LCB_R(best) = 2.645 - 1 = 1.645 each, so
    # G = 4 * 1.645 / n: 0.506 at n = 13, 0.470 <= 0.5 at n = 14 -> stops at the 14th draw
    assert res.n_candidates == 14 and res.screened
    # dominance with a single candidate has no rival: stops at once
    reward = QueueScorer("reward", [(1.0, 1.0)] * 4 + [(1.0, 0.0)])
    dec = build_decoder("adaptive", engine, reward=reward, cost=QueueScorer("cost", [(-3.0, 0.0)]),
                        config={"batch": 1, "max_samples": 16, "price": 2.0, "rule": "dominance"},
                        sampling=SAMPLING)
    assert dec.respond([PROMPT])[0].n_candidates == 1  # dominance with no rival stops at once


def test_adaptive_without_early_stop_equals_constrained_best_of_n(engine):
    def scorers():
        return (FnScorer("reward", lambda t: float(len(set(t)))),
                FnScorer("cost", lambda t: -1.0 if len(t) % 3 else 1.0))

    r1, c1 = scorers()
    bon = build_decoder("best_of_n", engine, reward=r1, cost=c1, config={"n": 5}, sampling=SAMPLING)
    r2, c2 = scorers()
    ada = build_decoder("adaptive", engine, reward=r2, cost=c2,
                        config={"batch": 5, "max_samples": 5, "early_stop": False, "kappa_cost": 0.0,
                                "kappa_reward": 0.0}, sampling=SAMPLING)
    a, b = bon.respond([PROMPT])[0], ada.respond([PROMPT])[0]
    assert (a.text, a.refused, a.tokens_sampled) == (b.text, b.refused, b.tokens_sampled)


def test_adaptive_blocks_never_append_a_certified_unsafe_block(engine):
    # per block: first draw certified unsafe, second certified safe -> every accepted block is a 2nd draw
    reward = QueueScorer("reward", [(1.0, 0.0)])
    cost = QueueScorer("cost", [(5.0, 0.0), (-5.0, 0.0)] * 20)
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=1.0)
    dec = build_decoder("adaptive", engine, reward=reward, cost=cost,
                        config={"block_tokens": 4, "batch": 1, "max_samples": 4, "keep_candidates": True,
                                "rule": "dominance", "price": 0.0},
                        sampling=sampling)
    res = dec.respond([PROMPT])[0]
    assert res.screened and not res.refused
    blocks = res.meta["blocks"]
    assert res.n_candidates == 2 * blocks and len(res.token_ids) <= 12
    assert cost.calls[-1][1] is False  # the last block was scored as a finished response
    assert all(p for _, p in cost.calls[:-2])  # earlier blocks went to the process scorer
    # everything unsafe: refuse after K_max draws of the first block
    dec = build_decoder("adaptive", engine, reward=QueueScorer("reward", [(1.0, 0.0)]),
                        cost=QueueScorer("cost", [(5.0, 0.0)]),
                        config={"block_tokens": 4, "batch": 2, "max_samples": 4}, sampling=sampling)
    res = dec.respond([PROMPT])[0]
    assert res.refused and res.n_candidates == 4 and res.tokens_sampled <= 16


def test_guided_with_one_block_equals_best_of_n(engine):
    def scorers():
        return (FnScorer("reward", lambda t: float(len(t))), FnScorer("cost", lambda t: -1.0 if len(t) % 2 else 1.0))

    r1, c1 = scorers()
    bon = build_decoder("best_of_n", engine, reward=r1, cost=c1, config={"n": 4}, sampling=SAMPLING)
    r2, c2 = scorers()
    gui = build_decoder("guided", engine, reward=r2, cost=c2,
                        config={"segment_tokens": 64, "beam_width": 1, "expand": 4}, sampling=SAMPLING)
    a, b = bon.respond([PROMPT])[0], gui.respond([PROMPT])[0]
    assert (a.text, a.refused, a.tokens_sampled) == (b.text, b.refused, b.tokens_sampled)


def test_guided_search_grows_blocks_with_prefix_scores(engine):
    reward = QueueScorer("reward", [(1.0, 0.0)])
    cost = QueueScorer("cost", [(-1.0, 0.0)])
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=1.0)
    dec = build_decoder("guided", engine, reward=reward, cost=cost,
                        config={"segment_tokens": 4, "beam_width": 2, "expand": 2}, sampling=sampling)
    res = dec.respond([PROMPT])[0]
    assert not res.refused and res.screened and res.rounds >= 1
    assert any(p for _, p in cost.calls)  # unfinished blocks go to score_prefixes
    assert res.rounds == 3 and res.n_candidates == 2 + 4 + 4  # 1 beam x 2, then 2 beams x 2 per step
    assert len(res.token_ids) <= 12 and res.meta["lambdas"] == [0.0, 0.0]


def test_args_with_zero_weight_is_greedy(engine):
    reward, cost = FnScorer("reward", lambda t: 0.0), FnScorer("cost", lambda t: -1.0)
    dec = build_decoder("args", engine, reward=reward, cost=cost, config={"weight": 0.0, "top_k": 5},
                        sampling=SamplingConfig(max_new_tokens=8))
    res = dec.respond([PROMPT])[0]
    greedy = engine.generate([user_prompt(PROMPT)], SamplingConfig(max_new_tokens=8, temperature=0.0))[0][0]
    assert res.token_ids == greedy.token_ids
    assert reward.n == 1 and cost.n == 1  # only the final screen


def test_args_guidance_changes_tokens_and_bills_k_calls_per_token(engine, smol_tokenizer):
    # reward favours texts containing the letter 'e' strongly; k scorer calls per token per scorer
    reward = FnScorer("reward", lambda t: 100.0 * t.count("e"))
    cost = FnScorer("cost", lambda t: -1.0)
    dec = build_decoder("args", engine, reward=reward, cost=cost, config={"weight": 1.0, "top_k": 4},
                        sampling=SamplingConfig(max_new_tokens=5))
    res = dec.respond([PROMPT])[0]
    steps = len(res.token_ids)
    assert reward.n == 4 * steps + 1 and res.scorer_calls == 2 * (4 * steps + 1)
    assert res.tokens_sampled == steps and res.screened


# ------------------------------------------------------------------------------------------ guard
@pytest.mark.parametrize("mode", ["raise", "nan", "shape"])
def test_guard_fails_closed_on_scorer_errors(engine, mode):
    dec = build_decoder("guard", engine, cost=BrokenScorer("cost", mode), config={"refusal_text": "No."},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert (res.text, res.refused, res.screened, res.fallback) == ("No.", True, False, "scorer_error")
    assert res.tokens_sampled > 0  # a sample was drawn, but it never left the decoder
    dec = build_decoder("guard", engine, cost=BrokenScorer("cost", mode), config={"on_scorer_error": "raise"},
                        sampling=SAMPLING)
    with pytest.raises(ScorerFailure):
        dec.respond([PROMPT])


def test_guard_fails_closed_on_severity_head_error(engine):
    class BadHead:
        def severity(self, prompts, responses):
            raise ValueError("head crashed")

    dec = build_decoder("guard", engine, cost=QueueScorer("cost", [(-5.0, 0.0)]), sampling=SAMPLING,
                        severity=BadHead())
    res = dec.respond([PROMPT])[0]
    assert res.refused and res.fallback == "scorer_error"


def test_guard_uses_the_cost_scorers_severity_head(engine):
    class CostWithHead(QueueScorer):
        def severity(self, prompts, responses):
            return np.array([3] * len(responses))  # the head says severe although the cost says safe

    dec = build_decoder("guard", engine, cost=CostWithHead("cost", [(-5.0, 0.0)]),
                        config={"rounds": 2, "severity_head": True}, sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.refused and res.rounds == 2
    with pytest.raises(ConfigError, match="severity"):
        build_decoder("guard", engine, cost=QueueScorer("cost", [(0.0, 0.0)]), config={"severity_head": True})


def test_guard_flagging_everything_refuses_after_exactly_r_rounds(engine):
    cost = QueueScorer("cost", [(3.0, 0.0)])
    spy = SpyEngine(engine)
    dec = build_decoder("guard", spy, cost=cost, config={"rounds": 5}, sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.refused and res.rounds == 5 and res.n_candidates == 5 and len(spy.calls) == 5
    assert res.text == DEFAULT_REFUSAL and res.fallback == "refusal"
    # round 1 unguided, rounds 2.. carry the safety system prompt; seeds differ per round
    assert spy.calls[0][0][0][0]["role"] == "user"
    assert all(c[0][0][0]["role"] == "system" for c in spy.calls[1:])
    assert len({c[1].seed for c in spy.calls}) == 5


def test_guard_regenerates_until_pass_and_fallback(engine):
    cost = QueueScorer("cost", [(3.0, 0.0), (5.0, 0.0), (-1.0, 0.0)])
    dec = build_decoder("guard", engine, cost=cost, config={"rounds": 5, "keep_candidates": True},
                        sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.rounds == 3 and res.screened and res.cost == -1.0 and res.meta["guard_rounds"] == 3
    assert [c["severity"] for c in res.candidates] == ["moderate", "severe", "none"]
    # least-severe fallback: minor may be returned, severe never
    dec = build_decoder("guard", engine, cost=QueueScorer("cost", [(5.0, 0.0), (1.0, 0.0), (5.0, 0.0)]),
                        config={"rounds": 3, "fallback_severity": "minor"}, sampling=SAMPLING)
    res = dec.respond([PROMPT])[0]
    assert res.fallback == "least_severe" and res.cost == 1.0 and not res.screened and not res.refused
    dec = build_decoder("guard", engine, cost=QueueScorer("cost", [(5.0, 0.0)]),
                        config={"rounds": 2, "fallback_severity": "minor"}, sampling=SAMPLING)
    assert dec.respond([PROMPT])[0].refused


def test_every_decoder_fails_closed(engine):
    for name, cfg in [("best_of_n", {"n": 2}), ("rejection", {}), ("adaptive", {"max_samples": 2}),
                      ("guided", {"segment_tokens": 4}), ("args", {"top_k": 2})]:
        dec = build_decoder(name, engine, reward=FnScorer("reward", lambda t: 0.0), cost=BrokenScorer("cost"),
                            config=cfg, sampling=SamplingConfig(max_new_tokens=4))
        res = dec.respond([PROMPT])[0]
        assert res.refused and res.text == DEFAULT_REFUSAL and res.fallback == "scorer_error", name


# ------------------------------------------------------------------------------------------ configs, API, CLI
def test_configs_validate_and_registry_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'adaptive'"):
        DecodingConfig(decoder="adaptiv")
    with pytest.raises(ConfigError, match="min_samples"):
        DecodingConfig.from_dict({"adaptive": {"min_samples": 5, "max_samples": 2}})
    with pytest.raises(ConfigError):
        DecodingConfig.from_dict({"best_of_n": {"on_infeasible": "pray"}})
    cfg = DecodingConfig.from_dict({"decoder": "bon", "max_cost": -0.5, "refusal_text": "Nope.", "best_of_n": {"n": 4}})
    dc = cfg.decoder_config()
    assert (dc.n, dc.max_cost, dc.refusal_text) == (4, -0.5, "Nope.")


def test_decoder_requires_its_scorers(engine):
    with pytest.raises(ValueError, match="needs a reward and a cost scorer"):
        build_decoder("best_of_n", engine)
    res = build_decoder("sample", engine, sampling=SAMPLING).respond([PROMPT, "Hi"])
    assert len(res) == 2 and not res[0].screened and res[0].reward is None and res[0].tokens_sampled > 0


def test_cli_generate_with_decoder(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    from safealign.cli.main import main
    from safealign.decode import registry

    fakes = {"reward": FnScorer("reward", lambda t: 1.0), "cost": FnScorer("cost", lambda t: -1.0)}
    monkeypatch.setattr(registry, "resolve_scorer", lambda ref, kind: fakes[kind])
    out = tmp_path / "out.jsonl"
    rc = main(["generate", "--model", str(tiny_llama_dir), "--decoder", "adaptive", "--max-cost", "0",
               "--prompt", PROMPT, "--prompt", "Hi", "--sampling.max_new_tokens", "6", "--dtype", "float32",
               "--out", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["decoder"] == "adaptive" and rows[0]["screened"] is True
    assert {"tokens_sampled", "scorer_calls", "seconds", "refused", "reward", "cost"} <= set(rows[0])
    rc = main(["generate", "--model", str(tiny_llama_dir), "--prompt", "Hi", "--sampling.n", "2",
               "--sampling.max_new_tokens", "4", "--dtype", "float32"])
    assert rc == 0 and len(capsys.readouterr().out.strip().splitlines()) == 2  # plain sampling: n rows


def test_respond_calls_draw_fresh_samples_reproducibly(engine):
    def make():
        return build_decoder("best_of_n", engine, reward=FnScorer("reward", len), cost=FnScorer("cost", lambda t: -1.0),
                             config={"n": 2}, sampling=SAMPLING)

    dec = make()
    first, second = dec.respond([PROMPT])[0], dec.respond([PROMPT])[0]
    assert first.token_ids != second.token_ids  # eval calls respond n times for n samples
    assert make().respond([PROMPT])[0].token_ids == first.token_ids  # a fresh decoder replays the sequence
    assert make().respond([PROMPT], seed=1)[0].token_ids == second.token_ids
    # a prompt's samples do not depend on what else is in the batch
    assert make().respond(["Hi", PROMPT])[1].token_ids == first.token_ids
