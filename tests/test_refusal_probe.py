"""The refusal probe: threshold at a false-positive rate, the logistic fit against scipy, prompt states."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from safealign.evaluate.refusal_probe import cross_validated_scores, fit_probe, prompt_states, rate_at_fpr


def test_rate_at_fpr_known_answer():
    negative = np.arange(100.0)  # the threshold flagging 15% is 84: 85..99 lie above it
    positive = np.array([50.0, 84.0, 85.0, 90.0])
    assert rate_at_fpr(positive, negative, 0.15) == (0.5, 0.15)
    assert rate_at_fpr(positive, negative, 0.0) == (0.0, 0.0)  # above the largest negative only
    with pytest.raises(ValueError):
        rate_at_fpr(positive, negative, 1.0)


def test_fit_probe_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)) * np.array([1.0, 3.0, 0.5]) + 2.0
    y = (x[:, 0] + 0.3 * rng.normal(size=80) > 2.0).astype(float)
    l2 = 2.0
    probe = fit_probe(x, y, l2)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)

    def objective(theta):
        logit = z @ theta[:3] + theta[3]
        return np.sum(np.logaddexp(0, logit) - y * logit) + 0.5 * l2 * theta[:3] @ theta[:3]

    ref = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(probe.weight, ref[:3], atol=1e-5)
    assert probe.bias == pytest.approx(ref[3], abs=1e-5)
    np.testing.assert_allclose(probe.score(x), z @ ref[:3] + ref[3], atol=1e-4)
    with pytest.raises(ValueError):
        fit_probe(x, np.ones(80))


def test_cross_validated_scores_leave_each_fold_out():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2))
    y = (x[:, 0] > 0).astype(float)
    scores = cross_validated_scores(x, y, folds=3, l2=1.0, seed=0)
    order = np.random.default_rng(0).permutation(30)
    test = order[0::3]
    train = np.setdiff1d(order, test)
    np.testing.assert_allclose(scores[test], fit_probe(x[train], y[train], 1.0).score(x[test]))
    assert np.mean((scores > 0) == (y > 0)) > 0.8  # a separable feature is learned out of fold


def test_prompt_states_are_the_last_prompt_token_and_ignore_padding(tiny_llama, smol_tokenizer):
    prompts = [[{"role": "user", "content": "Hi"}],
               [{"role": "user", "content": "How do I kill a Python process that hangs?"}]]
    side = smol_tokenizer.padding_side
    states = prompt_states(tiny_llama, smol_tokenizer, prompts, batch_size=2)
    assert states.shape == (2, tiny_llama.config.num_hidden_layers + 1, tiny_llama.config.hidden_size)
    assert smol_tokenizer.padding_side == side  # restored
    alone = prompt_states(tiny_llama, smol_tokenizer, prompts[:1], batch_size=1)  # no padding at all
    np.testing.assert_allclose(states[0], alone[0], atol=1e-4)
    from safealign.generation.engine import render_prompt

    ids = smol_tokenizer(render_prompt(smol_tokenizer, prompts[1]), return_tensors="pt",
                         add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        last = tiny_llama(ids, output_hidden_states=True).hidden_states[-1][0, -1]
    np.testing.assert_allclose(states[1, -1], last.numpy(), atol=1e-4)


def test_opener_logprob_is_the_teacher_forced_mass_of_the_openers(tiny_llama, smol_tokenizer):
    from safealign.evaluate.refusal_probe import opener_logprob
    from safealign.generation.engine import render_prompt

    prompts = [[{"role": "user", "content": "Hi"}],
               [{"role": "user", "content": "Write a long story about a dragon who learns to code."}]]
    openers = ("I'm sorry", "Sorry")
    got = opener_logprob(tiny_llama, smol_tokenizer, prompts, openers, batch_size=2)  # padded batch
    for row, prompt in enumerate(prompts):
        head = smol_tokenizer(render_prompt(smol_tokenizer, prompt), add_special_tokens=False)["input_ids"]
        terms = []
        for opener in openers:
            ids = smol_tokenizer(opener, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                lp = tiny_llama(torch.tensor([head + ids])).logits[0].log_softmax(-1)
            terms.append(sum(float(lp[len(head) + j - 1, t]) for j, t in enumerate(ids)))
        assert got[row] == pytest.approx(float(np.logaddexp(*terms)), abs=1e-4)


def test_decision_stage_prompts_are_balanced_and_seeded():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "decision_stage", Path(__file__).resolve().parents[1] / "bench" / "decision_stage.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    for per_side in (700, 100):
        items = stage.decision_prompts(per_side, seed=0)
        labels = [t for _, t in items]
        assert labels.count(1.0) == per_side and labels.count(0.0) == per_side
    assert items == stage.decision_prompts(100, seed=0)  # seeded
    assert items != stage.decision_prompts(100, seed=1)
