"""HC-RLHF: bounds against scipy, the guarantee by simulation, the pessimistic handler, the certify flow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from safealign.certify import bounds
from safealign.certify.bounds import (
    hoeffding_ucb,
    hoeffding_width,
    pessimistic_coefficient,
    pessimistic_ucb,
    safety_test,
    student_t_ucb,
    t_quantile,
)
from safealign.certify.certificate import (
    CERTIFICATE_NAME,
    EXIT_CERTIFIED,
    EXIT_NO_SOLUTION,
    FAILED_REPORT_NAME,
    CertifyConfig,
    candidate_and_safety_prompts,
    drop_overlap,
    hash_subset,
    prompts_sha256,
    read_certificate,
    run_certify,
    split_candidate_safety,
)
from safealign.certify.handler import PessimisticConfig, PessimisticHandler
from safealign.certify.simulate import FAMILIES, certify_power, false_certify_rates, monte_carlo_se
from safealign.config import ConfigError
from safealign.scoring import Scorer, Scores
from safealign.train.constraints import ConstraintHandler

RNG = np.random.default_rng(7)
X = RNG.normal(0.3, 1.2, 25)


# ------------------------------------------------------------------------------ bounds vs scipy
def test_t_quantile_matches_scipy():
    assert t_quantile(0.05, 10) == pytest.approx(stats.t.ppf(0.95, 9), rel=1e-12)
    assert t_quantile(0.05, 10) == pytest.approx(1.8331129, abs=1e-6)  # table value t_{0.95, 9}
    assert t_quantile(0.01, 1000) == pytest.approx(stats.norm.ppf(0.99), abs=0.01)


def test_student_t_ucb_is_the_upper_end_of_scipys_interval():
    for delta in (0.01, 0.05, 0.2):
        _, hi = stats.t.interval(1 - 2 * delta, len(X) - 1, loc=X.mean(), scale=stats.sem(X))
        assert student_t_ucb(X, delta) == pytest.approx(hi, rel=1e-12)


def test_safety_test_agrees_with_scipy_one_sided_ttest():
    # pass  <=>  H0: mu >= d is rejected at level delta by the one-sided t-test
    for d in np.linspace(-0.5, 1.5, 41):
        p = stats.ttest_1samp(X, d, alternative="less").pvalue
        if abs(p - 0.05) > 1e-9:
            assert safety_test(X, d, 0.05, "t").passed == (p <= 0.05), d


def test_hoeffding_known_values_and_tail():
    assert hoeffding_width(100, 0.05, 0.0, 1.0) == pytest.approx(math.sqrt(math.log(20) / 200), rel=1e-12)
    assert hoeffding_width(100, 0.05, 0.0, 1.0) == pytest.approx(0.1223878, abs=1e-6)
    w = hoeffding_width(37, 0.1, -2.0, 3.0)
    assert math.exp(-2 * 37 * w**2 / 5.0**2) == pytest.approx(0.1, rel=1e-12)  # the tail bound equals delta
    x = RNG.uniform(0, 1, 50)
    assert hoeffding_ucb(x, 0.05, 0, 1) == pytest.approx(x.mean() + hoeffding_width(50, 0.05, 0, 1))


def test_hoeffding_refuses_costs_outside_the_declared_range():
    with pytest.raises(ValueError, match="outside the declared range"):
        hoeffding_ucb([0.1, 0.5, 1.2], 0.05, 0.0, 1.0)
    with pytest.raises(ValueError, match="range"):
        safety_test([0.1, 0.2], 0.5, 0.05, "hoeffding")


def test_bounds_are_vectorised_and_reject_bad_input():
    batch = RNG.normal(size=(6, 20))
    np.testing.assert_allclose(student_t_ucb(batch, 0.05), [student_t_ucb(r, 0.05) for r in batch], rtol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        student_t_ucb([0.0, float("nan"), 1.0], 0.05)
    with pytest.raises(ValueError, match="at least 2"):
        student_t_ucb([1.0], 0.05)
    with pytest.raises(ValueError, match="delta"):
        t_quantile(1.5, 10)


def test_pessimistic_bound_formula():
    nb, ns, delta = 64, 400, 0.05
    k = pessimistic_coefficient(nb, ns, delta, c1=1.0, c2=1.0)
    expect = stats.t.ppf(0.95, nb - 1) / math.sqrt(nb) + stats.t.ppf(0.95, ns - 1) / math.sqrt(ns)
    assert k == pytest.approx(expect, rel=1e-12)
    # C1 = 0, C2 = 2: Thomas et al.'s doubled safety-test interval
    assert pessimistic_coefficient(nb, ns, delta, 0.0, 2.0) == pytest.approx(2 * stats.t.ppf(0.95, ns - 1) / 20)
    x = RNG.normal(0, 1, nb)
    assert pessimistic_ucb(x, ns, delta) == pytest.approx(x.mean() + k * x.std(ddof=1))
    # inflated for the test's size: more pessimistic than the safety test's own bound on the same data
    assert pessimistic_ucb(x, nb, delta, 0.0, 2.0) > student_t_ucb(x, delta)


def test_safety_test_result_fields():
    r = safety_test(X, 10.0, 0.05, "t")
    assert r.passed and r.n == 25 and r.bound == "t" and r.ucb <= 10.0
    assert r.std == pytest.approx(X.std(ddof=1)) and r.margin == pytest.approx(r.ucb - r.mean)
    assert set(r.to_dict()) >= {"passed", "ucb", "mean", "std", "n", "threshold", "delta", "bound", "margin"}
    assert not safety_test(X, X.mean(), 0.05, "t").passed  # the mean itself is never enough


# ------------------------------------------------------------------------------ the guarantee, by simulation
TRIALS = 4000  # per (family, n): binomial SE at delta = 0.05 is 0.0034
DELTA = 0.05
SE = monte_carlo_se(DELTA, TRIALS)


@pytest.mark.parametrize("n", [10, 30, 100])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_false_certification_rate(family, n):
    """True mean just above d: Hoeffding certifies at most delta (exactly); t within MC error on normal data."""
    fam = FAMILIES[family]
    rates = false_certify_rates(fam, n, TRIALS, DELTA, seed=n)
    if fam.low is not None:
        assert rates["hoeffding"] <= DELTA
    if family in ("normal", "beta(10,10)"):
        assert rates["t"] <= DELTA + 3 * SE


@pytest.mark.parametrize("family", ["lognormal", "bernoulli(0.05)", "beta(0.2,1.8)"])
def test_t_bound_undercovers_on_small_skewed_samples(family):
    """Where normality bends: with n = 10 skewed costs, t certifies unsafe models far more often than delta."""
    rates = false_certify_rates(FAMILIES[family], 10, TRIALS, DELTA, seed=1)
    assert rates["t"] > DELTA + 5 * SE


def test_power_when_the_model_is_safe():
    assert certify_power(FAMILIES["normal"], 100, TRIALS, DELTA)["t"] > 0.99
    assert certify_power(FAMILIES["bernoulli(0.05)"], 300, TRIALS, DELTA)["hoeffding"] > 0.95
    far = FAMILIES["beta(10,10)"]  # mean 0.5; d = 0.8 is far above it
    x = far.sample(np.random.default_rng(3), (TRIALS, 100))
    assert np.mean(hoeffding_ucb(x, DELTA, 0, 1) <= 0.8) == 1.0


# ------------------------------------------------------------------------------ the pessimistic handler
def test_handler_is_registered_under_its_name():
    assert ConstraintHandler.registry["pessimistic"] is PessimisticHandler


def _run(handler: PessimisticHandler, mean: float, steps: int = 20, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    lams = [handler.lam]
    for _ in range(steps):
        cost = mean + 0.5 * torch.randn(32, generator=g)
        handler.update(cost, torch.arange(32) // 4)
        lams.append(handler.lam)
    return lams


def test_lambda_rises_when_the_pessimistic_cost_exceeds_d():
    h = PessimisticHandler(threshold=0.0, n_safety=200, window=64, lambda_lr=0.5)
    lams = _run(h, mean=0.2)
    assert all(b > a for a, b in zip(lams, lams[1:], strict=False))
    assert h.metrics()["cost_ucb"] > h.metrics()["cost_window_mean"] > 0


def test_lambda_rises_even_when_only_the_margin_is_over_d():
    # mean cost below d, but mean + k * std above it: the expected-cost handler would relax, this one must not
    h = PessimisticHandler(threshold=0.0, n_safety=50, window=64, lambda_lr=0.5)
    lams = _run(h, mean=-0.1)
    m = h.metrics()
    assert m["cost_window_mean"] < 0 < m["cost_ucb"]
    assert lams[-1] > lams[0]


def test_lambda_falls_when_the_pessimistic_cost_is_below_d():
    h = PessimisticHandler(threshold=0.0, n_safety=200, window=64, lambda_lr=0.5, lambda_init=5.0)
    lams = _run(h, mean=-1.0, steps=200)
    assert all(b <= a for a, b in zip(lams, lams[1:], strict=False)) and lams[-1] < lams[0]
    assert lams[-1] == pytest.approx(h.cfg.lambda_min)  # floor, never negative
    # wakes up again when costs turn unsafe
    assert _run(h, mean=1.0, steps=5)[-1] > lams[-1]


def test_shaped_reward_and_state_roundtrip():
    h = PessimisticHandler(threshold=0.0, lambda_init=2.0)
    r, c = torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.5, -1.0, 2.0])
    torch.testing.assert_close(h.shaped_reward(r, c, torch.zeros(3, dtype=torch.long)), r - 2.0 * c)
    _run(h, mean=0.3, steps=3)
    h2 = PessimisticHandler(threshold=0.0, lambda_init=2.0)
    h2.load_state_dict(json.loads(json.dumps(h.state_dict())))
    assert h2.lam == h.lam and h2.pessimistic_cost() == pytest.approx(h.pessimistic_cost())
    # the std-gradient variant adds k (c^2 - 2 c mean) / (2 std) to each cost
    hs = PessimisticHandler(threshold=0.0, lambda_init=2.0, std_gradient=True)
    hs.load_state_dict(h.state_dict())
    m, s = h.metrics()["cost_window_mean"], h.metrics()["cost_std"]
    k = h.metrics()["ucb_coef"]
    torch.testing.assert_close(hs.shaped_reward(r, c, torch.zeros(3, dtype=torch.long)),
                               r - hs.lam * (c + k * (c * c - 2 * c * m) / (2 * s)))


def test_handler_constrains_the_safety_tests_cost_quantity():
    h = PessimisticHandler(threshold=0.2, cost_transform="sigmoid", lambda_init=1.0)
    r, c = torch.zeros(3), torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(h.shaped_reward(r, c, torch.zeros(3, dtype=torch.long)), -torch.sigmoid(c))
    h.update(torch.full((8,), -4.0), torch.zeros(8, dtype=torch.long))  # P(unsafe) ~ 0.018 < 0.2
    assert h.lam < 1.0 and 0 < h.metrics()["cost_window_mean"] < 0.02


def test_handler_config_is_validated():
    with pytest.raises(ConfigError, match="delta"):
        PessimisticHandler(delta=1.5)
    with pytest.raises(ConfigError, match="unknown option 'treshold'.*threshold"):
        PessimisticHandler(treshold=0.1)
    assert PessimisticHandler(PessimisticConfig(n_safety=300)).cfg.n_safety == 300


def test_handler_builds_from_the_trainers_constraint_config():
    """build_handler passes the trainer-wide config: shared fields are read, hc_* fields map to ours."""
    from types import SimpleNamespace

    trainer_cfg = SimpleNamespace(method="pessimistic", threshold=0.3, lambda_init=0.0, lambda_lr=0.2, lambda_max=50.0,
                                  window=128, update_delay=2, cvar_alpha=0.9, hc_delta=0.01, hc_n_safety=700)
    h = PessimisticHandler(trainer_cfg)
    c = h.cfg
    assert (c.threshold, c.lambda_lr, c.lambda_max, c.window, c.update_delay_steps) == (0.3, 0.2, 50.0, 128, 2)
    assert (c.delta, c.n_safety, c.c1) == (0.01, 700, 1.0) and h.lam == pytest.approx(c.lambda_min)


def test_trainer_build_handler_makes_a_pessimistic_handler():
    from safealign.train import constraints

    if not hasattr(constraints, "build_handler") or not hasattr(constraints, "ConstraintConfig"):
        pytest.skip("the trainer's handler factory is not there yet")
    h = constraints.build_handler(constraints.ConstraintConfig(method="pessimistic", threshold=0.1))
    assert isinstance(h, PessimisticHandler) and h.cfg.threshold == 0.1


# ------------------------------------------------------------------------------ split
def test_candidate_safety_split_is_disjoint_deterministic_and_hash_based():
    prompts = [f"How do I do thing number {i}?" for i in range(400)]
    variants = ["  how do I do THING number 3?  ", "How do I do thing number 7?"]
    cand, safe = split_candidate_safety(prompts + variants, 0.3)
    assert not set(cand) & set(safe) and len(cand) + len(safe) == 400  # variants dropped as duplicates
    assert 0.22 < len(safe) / 400 < 0.38
    assert split_candidate_safety(list(reversed(prompts)), 0.3)[1] == list(reversed(safe))
    assert set(split_candidate_safety(prompts, 0.3, salt="other")[1]) != set(safe)
    sub = hash_subset(safe, 20)
    assert len(sub) == 20 and set(sub) <= set(safe) and hash_subset(list(reversed(safe)), 20) == sub
    assert prompts_sha256([[{"role": "user", "content": p}] for p in sub]) == prompts_sha256(
        [[{"role": "user", "content": p}] for p in reversed(sub)])
    assert drop_overlap(["HOW do I do thing number 3?", "unrelated"], safe) == (
        ["unrelated"] if "How do I do thing number 3?" in safe else ["HOW do I do thing number 3?", "unrelated"])


def test_candidate_and_safety_prompts_from_a_file(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"prompt {i}"}) + "\n" for i in range(60)))
    cand, safe = candidate_and_safety_prompts([str(f)], 0.5, n_safety=10)
    assert len(safe) == 10 and all(m[0]["role"] == "user" for m in cand + safe)
    assert not {m[0]["content"] for m in cand} & {m[0]["content"] for m in safe}


# ------------------------------------------------------------------------------ certify, end to end
class FakeCost(Scorer):
    """Cost = mu + a small deterministic spread; no model needed."""

    kind = "cost"

    def __init__(self, mu: float):
        self.mu = mu

    def score(self, prompts, responses):
        spread = np.array([((len(r) % 7) - 3) / 30 for r in responses])
        return Scores(self.mu + spread, np.zeros(len(responses)))


PROMPTS = [f"Tell me how to do harmful thing {i}" for i in range(12)]


@pytest.fixture(scope="module")
def tiny_engine(tiny_llama_dir):
    """One engine for the library-level tests (the CLI test loads its own, as users do)."""
    from safealign.generation import HFEngine

    return HFEngine.from_pretrained(str(tiny_llama_dir), dtype="float32")


def _cfg(tiny_llama_dir: Path, out: Path, **kw) -> CertifyConfig:
    base = {"model": str(tiny_llama_dir), "cost_model": "fake", "threshold": 0.0, "out": str(out),
            "dtype": "float32", "sampling": {"max_new_tokens": 3, "n": 2, "batch_size": 32, "temperature": 0}}
    return CertifyConfig.from_dict({**base, **kw})


def _messages():
    return [[{"role": "user", "content": p}] for p in PROMPTS]


def test_certify_pass_writes_a_complete_certificate(tiny_llama_dir, tiny_engine, tmp_path):
    out = run_certify(_cfg(tiny_llama_dir, tmp_path), engine=tiny_engine, scorer=FakeCost(-1.0), prompts=_messages())
    assert out.exit_code == EXIT_CERTIFIED and out.certified
    cert = read_certificate(tmp_path)
    for key in ("delta", "threshold", "n", "mean", "std", "bound", "ucb", "model_weights_hash", "cost_model_hash",
                "test_prompts_sha256", "decoding", "date", "scope"):
        assert cert[key] is not None, key
    assert cert["n"] == 12 and cert["samples_per_prompt"] == 2 and cert["bound"] == "t"
    assert cert["ucb"] <= 0.0 and cert["mean"] == pytest.approx(out.result.mean)
    assert cert["decoding"]["max_new_tokens"] == 3 and cert["test_prompts_sha256"] == prompts_sha256(_messages())
    assert "not" in cert["scope"] and "true harm" in cert["scope"]
    assert not (tmp_path / FAILED_REPORT_NAME).exists()


def test_certify_fail_writes_no_certificate_and_returns_the_distinct_status(tiny_llama_dir, tiny_engine, tmp_path,
                                                                            capsys):
    (tmp_path / CERTIFICATE_NAME).write_text(json.dumps({"certified": True, "verdict": "certified"}))  # stale
    out = run_certify(_cfg(tiny_llama_dir, tmp_path), engine=tiny_engine, scorer=FakeCost(0.5), prompts=_messages())
    assert out.exit_code == EXIT_NO_SOLUTION == 3 and not out.certified
    assert not (tmp_path / CERTIFICATE_NAME).exists()
    assert (tmp_path / (CERTIFICATE_NAME + ".invalidated")).exists()
    report = json.loads((tmp_path / FAILED_REPORT_NAME).read_text())
    assert report["certified"] is False and report["verdict"] == "No Solution Found" and report["ucb"] > 0.0
    with pytest.raises(ValueError, match="not a certificate"):
        read_certificate(tmp_path / FAILED_REPORT_NAME)
    assert "No Solution Found" in capsys.readouterr().err


def test_certify_cli(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    from safealign.certify import certificate
    from safealign.cli.main import main

    pfile = tmp_path / "prompts.jsonl"
    pfile.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS * 2))  # duplicates are dropped
    common = ["certify", "--model", str(tiny_llama_dir), "--cost-model", "fake", "--threshold", "0",
              "--prompts", str(pfile), "--safety-fraction", "0.6", "--dtype", "float32",
              "--sampling.max_new_tokens", "2", "--sampling.temperature", "0", "--out", str(tmp_path / "o")]
    monkeypatch.setattr(certificate, "load_cost_scorer", lambda ref: FakeCost(0.5))
    assert main(common) == 3
    assert "No Solution Found" in capsys.readouterr().out
    monkeypatch.setattr(certificate, "load_cost_scorer", lambda ref: FakeCost(-0.5))
    # P(unsafe) = sigmoid(-0.5) = 0.38; Hoeffding's margin with n ~ 7 is <= 0.55: passes at d = 0.95
    assert main([*common, "--bound", "hoeffding", "--cost_transform", "sigmoid", "--threshold", "0.95"]) == 0
    cert = read_certificate(tmp_path / "o")
    assert cert["bound"] == "hoeffding" and cert["cost_range"] == [0.0, 1.0] and 2 <= cert["n"] < 12
    assert main(["certify", "--model", str(tiny_llama_dir)]) == 2  # missing --cost-model / --threshold
    assert "--cost-model" in capsys.readouterr().err


def test_certify_config_rejects_an_unknown_hoeffding_range():
    with pytest.raises(ConfigError, match="known cost range"):
        CertifyConfig(bound="hoeffding")
    with pytest.raises(ConfigError, match="probability"):
        CertifyConfig(cost_transform="sigmoid", threshold=2.0)
    assert CertifyConfig(bound="hoeffding", cost_low=-5, cost_high=5).cost_range() == (-5, 5)


def test_bounds_module_exports():
    assert bounds.BOUNDS == ("t", "hoeffding")
