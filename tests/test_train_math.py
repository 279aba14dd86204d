"""Constraint handlers and policy losses checked against their math on tiny known-answer cases."""

from __future__ import annotations

import math

import pytest
import torch

from safealign import losses as L
from safealign.train.constraints import ConstraintConfig, build_handler, cvar


def handler(method: str, **kw):
    return build_handler(ConstraintConfig(method=method, **kw))


def feed(h, values, steps, n=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lams = []
    for _ in range(steps):
        c = values(gen, n)
        h.update(c, torch.arange(n) // 4)
        lams.append(h.lam)
    return lams


def test_expected_lambda_rises_when_cost_exceeds_threshold_and_falls_otherwise():
    h = handler("expected", threshold=0.0, lambda_init=1.0, lambda_lr=0.1, window=64)
    up = feed(h, lambda g, n: 0.5 + torch.rand(n, generator=g), 10)
    assert all(b > a for a, b in zip([1.0, *up], up, strict=False))
    h2 = handler("expected", threshold=0.0, lambda_init=1.0, lambda_lr=0.5, window=64)
    down = feed(h2, lambda g, n: -1.0 - torch.rand(n, generator=g), 40)
    assert all(b < a for a, b in zip([1.0, *down], down, strict=False))
    assert 0 < down[-1] < 0.05  # log-parametrised: approaches 0 (ever more slowly), never negative


def test_lambda_zero_gives_reward_only_advantages():
    r = torch.tensor([1.0, 0.0, 2.0, 5.0])
    c = torch.tensor([3.0, -1.0, 0.5, 9.0])
    g = torch.tensor([0, 0, 1, 1])
    h = handler("expected", lambda_init=0.0)
    assert torch.equal(L.group_advantages(h.shaped_reward(r, c, g), g), L.group_advantages(r, g))
    ro = handler("reward_only", lambda_init=3.0)
    assert torch.equal(ro.shaped_reward(r, c, g), r)


def test_rectified_zeroes_cost_gradient_of_safe_responses():
    h = handler("rectified", threshold=0.0, lambda_init=2.0)
    r = torch.tensor([1.0, 0.5, 0.2])
    c = torch.tensor([-2.0, -0.1, 1.5], requires_grad=True)
    shaped = h.shaped_reward(r, c, torch.zeros(3, dtype=torch.long))
    (grad,) = torch.autograd.grad(shaped.sum(), c)
    assert torch.equal(grad, torch.tensor([0.0, 0.0, -2.0]))
    # all safe: exactly the reward for any lambda
    safe_c = torch.tensor([-3.0, -1.0, 0.0])
    for lam in (0.0, 1.0, 100.0):
        h.lam = lam
        assert torch.equal(h.shaped_reward(r, safe_c, torch.zeros(3, dtype=torch.long)), r)


def test_rectified_lambda_never_decreases_with_zero_delta():
    h = handler("rectified", lambda_init=0.5, lambda_lr=0.2, rectified_delta=0.0)
    lams = feed(h, lambda g, n: torch.randn(n, generator=g), 20)
    assert all(b >= a for a, b in zip([0.5, *lams], lams, strict=False)) and lams[-1] > 0.5
    h2 = handler("rectified", lambda_init=0.5, lambda_lr=0.2, rectified_delta=0.0)
    assert feed(h2, lambda g, n: -torch.rand(n, generator=g), 5)[-1] == 0.5  # nothing violates: no change


def test_safety_compensation_example_rectified_vs_expected():
    # design note §2 test 2: x1 actions (r, c) = (1, -2), (0, -2); x2: (1, +1), (0, -1); beta = 0.1
    beta = 0.1

    def best_p_unsafe_action(lam, rectified):
        # closed-form optimum of E[R] + beta*entropy-like KL to uniform on x2's two actions
        c1 = max(1.0, 0.0) if rectified else 1.0
        c2 = 0.0 if rectified else -1.0
        logits = torch.tensor([1.0 - lam * c1, 0.0 - lam * c2]) / beta
        return float(torch.softmax(logits, 0)[0])

    # RePO: pi(a1|x2) = sigma((1 - lam)/beta): below 1/2 iff lam > 1
    assert best_p_unsafe_action(0.9, True) > 0.5 and best_p_unsafe_action(1.1, True) < 0.5
    assert math.isclose(best_p_unsafe_action(2.0, True), 1 / (1 + math.exp(10.0)), rel_tol=1e-6)
    # the expected constraint with mean cost over both prompts is already met by pi(a1|x2) ~ 1:
    mean_cost = 0.5 * (-2.0) + 0.5 * (+1.0)
    assert mean_cost < 0  # feasible on average although x2 is answered unsafely: the compensation effect


def test_cvar_equals_tail_mean_known_cases():
    c = torch.arange(1, 11, dtype=torch.float64)
    assert cvar(c, 0.2) == pytest.approx(9.5)
    assert cvar(c, 0.25) == pytest.approx((10 + 9 + 0.5 * 8) / 2.5)
    assert cvar(c, 1.0) == pytest.approx(5.5)


def test_cvar_ru_transformed_cost_mean_is_cvar_at_var():
    torch.manual_seed(0)
    c = torch.rand(10_000)
    h = handler("cvar", cvar_alpha=0.9)
    shaped_cost = h.transformed_cost(c, torch.zeros_like(c, dtype=torch.long))
    # nu + E[(c - nu)^+]/0.1 at nu = VaR_0.9 of U(0,1) = CVaR = 0.95
    assert float(shaped_cost.mean()) == pytest.approx(0.95, abs=0.01)
    # alpha = 0: tail = 1, nu = min, transformed mean = E[c] (the expected constraint)
    h0 = handler("cvar", cvar_alpha=0.0)
    assert float(h0.transformed_cost(c, torch.zeros_like(c, dtype=torch.long)).mean()) == pytest.approx(
        float(c.mean()), abs=1e-5)


def test_cvar_lambda_dynamics_on_uniform_stream():
    # design §3 test 3: tail 0.1 of U(0,1) has CVaR 0.95
    h = handler("cvar", cvar_alpha=0.9, threshold=0.5, lambda_init=0.0, lambda_lr=0.1, window=640)
    lams = feed(h, lambda g, n: torch.rand(n, generator=g), 20)
    assert all(b > a for a, b in zip(lams, lams[1:], strict=False))
    assert lams[-1] == pytest.approx(0.1 * 20 * 0.45, rel=0.15)
    h2 = handler("cvar", cvar_alpha=0.9, threshold=1.0, lambda_init=0.0, lambda_lr=0.1, window=640)
    assert feed(h2, lambda g, n: torch.rand(n, generator=g), 10)[-1] == 0.0


def test_cvar_bandit_reaches_constrained_optimum():
    # design §3 test 4: arm S (r .5, c 0), arm R (r 1, c 10 w.p. .1). CVaR_0.1 <= 2 -> p* = 0.2, whereas the
    # expected-cost budget E[c] = p <= 2 would be inactive (p* = 1). The handler sees sampled on-policy costs;
    # the policy follows the exact gradient of E[shaped reward] (c~ = nu + (c - nu)^+ / tail at the handler's nu).
    torch.manual_seed(0)
    h = handler("cvar", cvar_alpha=0.9, threshold=2.0, lambda_init=0.0, lambda_lr=0.0005, window=4096)
    logit, ps, lams = 0.0, [], []
    zero = torch.zeros(1, dtype=torch.long)
    for step in range(2500):
        p = 1 / (1 + math.exp(-logit))
        n = 1024
        arm_r = torch.rand(n) < p
        cost = torch.where(arm_r & (torch.rand(n) < 0.1), 10.0, 0.0)
        c0, c10 = h.transformed_cost(torch.tensor([0.0, 10.0]), torch.cat([zero, zero])).tolist()
        gain_r = 1.0 - h.lam * (0.9 * c0 + 0.1 * c10)
        gain_s = 0.5 - h.lam * c0
        logit += 0.5 * p * (1 - p) * (gain_r - gain_s)
        h.update(cost, torch.zeros(n, dtype=torch.long))
        if step >= 1500:
            ps.append(p)
            lams.append(h.lam)
    p_avg = sum(ps) / len(ps)
    # indifference between the arms: 1 - lam * 10 (tail-weighted cost 100 w.p. 0.1) = 0.5 -> lam* = 0.05
    assert sum(lams) / len(lams) == pytest.approx(0.05, abs=0.01)
    assert p_avg == pytest.approx(0.2, abs=0.03)
    assert 10 * p_avg == pytest.approx(2.0, abs=0.3)  # the measured CVaR of the averaged policy
    # the same bandit under the expected-cost handler with budget 2: the constraint never binds
    e = handler("expected", threshold=2.0, lambda_init=1e-3)
    feed(e, lambda g, n: torch.where(torch.rand(n, generator=g) < 0.1, 10.0, 0.0), 20)
    assert e.lam < 1e-3


def test_dual_step_sign_and_phase_length():
    h = handler("dual", threshold=0.0, lambda_init=1.0, lambda_lr=0.5, dual_inner_steps=3)
    hi = torch.full((8,), 2.0)
    g = torch.zeros(8, dtype=torch.long)
    h.update(hi, g)
    h.update(hi, g)
    assert h.lam == 1.0  # fixed during the inner phase
    h.update(hi, g)
    assert h.lam == pytest.approx(1.0 + 0.5 * 2.0)  # E[C] > d: lambda rises
    lo = torch.full((8,), -4.0)
    for _ in range(3):
        h.update(lo, g)
    assert h.lam == 0.0  # projected: max(0, 2 - 0.5*4)


def test_dual_converges_on_bandit_with_exact_inner_maximiser():
    # design §5 test 1: pi_lam(a2) = sigma(lam - 1) with r = (1, 0), g = (0, 1), b = 0.7 -> lam* = 1 + logit(0.7)
    h = handler("dual", threshold=-0.7, lambda_init=0.0, lambda_lr=1.0, dual_inner_steps=1)
    for _ in range(3000):
        p2 = torch.sigmoid(torch.tensor(h.lam - 1.0))
        expected_cost = -float(p2)  # c = -g
        h.update(torch.tensor([expected_cost]), torch.zeros(1, dtype=torch.long))
    assert h.lam == pytest.approx(1 + math.log(0.7 / 0.3), abs=0.05)


def test_group_advantages():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 4.0])
    g = torch.tensor([0, 0, 0, 1, 1, 1])
    a = L.group_advantages(r, g)
    assert torch.equal(a[:3], torch.zeros(3))  # equal rewards: zero advantage
    assert torch.allclose(a[3:], torch.tensor([-2.0, 0.0, 2.0]) / torch.tensor([0.0, 2.0, 4.0]).std() * 1, atol=1e-5)
    loo = L.group_advantages(r, g, scale="none", leave_one_out=True)
    assert torch.allclose(loo[3:], torch.tensor([0 - 3.0, 2 - 2.0, 4 - 1.0]))
    # batch: one std pooled over groups, sum of squared deviations / (N - groups) = (0 + 8) / 4
    b = L.group_advantages(r, g, scale="batch")
    assert torch.equal(b[:3], torch.zeros(3))
    assert torch.allclose(b[3:], torch.tensor([-2.0, 0.0, 2.0]) / math.sqrt(2.0), atol=1e-5)
    assert torch.allclose(L.group_advantages(r[3:], g[3:], scale="batch"), a[3:], atol=1e-5)  # one group


def test_batch_scaled_advantages_keep_group_spreads():
    # a benign group that differs by 1 and a harmful group that differs by 10 (lambda * cost): GRPO's
    # per-group std makes them push equally; the pooled std keeps the 1:10 ratio of the Lagrangian
    r = torch.tensor([0.0, 1.0, 0.0, 10.0])
    g = torch.tensor([0, 0, 1, 1])
    grp, bat = L.group_advantages(r, g), L.group_advantages(r, g, scale="batch")
    assert torch.allclose(grp[:2].abs(), grp[2:].abs())
    assert torch.allclose(bat[2:].abs() / bat[:2].abs(), torch.tensor([10.0, 10.0]))
    with pytest.raises(ValueError):
        L.group_advantages(r, g, scale="std")


def test_clipped_policy_loss_and_kl():
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    old = torch.log(torch.tensor([[0.25, 0.5]]))  # ratio 2 on token 0, 1 on token 1
    mask = torch.ones(1, 2)
    loss, info = L.clipped_policy_loss(logp, old, torch.tensor([1.0]), mask, clip_eps=0.2)
    assert float(loss) == pytest.approx(-(1.2 + 1.0) / 2)  # positive advantage: ratio clipped at 1.2
    assert info["clip_frac"] == pytest.approx(0.5)
    assert torch.equal(L.kl_k3(logp, logp), torch.zeros(1, 2))
    assert bool((L.kl_k3(logp, old) >= 0).all())


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    adv, ret = L.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: advantage = return - value, return = 1 at every step
    assert torch.allclose(adv, torch.tensor([[0.5, 0.5, 0.5]]))
    assert torch.allclose(ret, torch.ones(1, 3))
    adv0, _ = L.gae(rewards, values, mask, gamma=1.0, lam=0.0)  # one-step TD errors
    assert torch.allclose(adv0, torch.tensor([[0.0, 0.0, 0.5]]))


def test_dpo_loss_known_values_and_gradient_sign():
    zero = torch.zeros(2)
    chosen = torch.zeros(2, requires_grad=True)
    loss, info = L.dpo_loss(chosen, zero, zero, zero, beta=0.5)
    assert loss.item() == pytest.approx(math.log(2.0))  # policy == reference: sigmoid(0) = 1/2
    loss.backward()
    # d/d logp_c of -log sigmoid(beta * m) at m = 0, batch mean: -beta * sigmoid(0) / B
    assert torch.allclose(chosen.grad, torch.full((2,), -0.5 * 0.5 / 2))
    # the reference cancels: a pair whose log-ratio moved by +2 (chosen) and -2 (rejected) has margin beta * 4
    loss, info = L.dpo_loss(torch.tensor([-3.0]), torch.tensor([-9.0]), torch.tensor([-5.0]), torch.tensor([-7.0]), 0.5)
    assert info["dpo_margin"] == pytest.approx(2.0) and info["dpo_accuracy"] == 1.0
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-2.0))))


def test_refusal_rules_tighten_only_the_labelled_cases():
    from safealign.scoring.data import looks_like_refusal
    from safealign.train.rollout import refusal_rules

    cost = torch.tensor([-2.0, -2.0, 3.0, -2.0, -1.0, -2.0])
    reward = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, -3.0])
    harmful = torch.tensor([True, True, True, False, True, False])
    responses = ["Sure, here is how you do it.", "I'm sorry, but I can't help with that.",
                 "Here are the steps: first ...", "Sure, here is a poem.", "It's important to stay safe.",
                 "I'm sorry, but I can't help with that."]
    refused = torch.tensor([looks_like_refusal(t) for t in responses])
    r, c = refusal_rules(reward, cost, harmful, refused, 1.0, 1.0)
    # harmful: a non-refusal costs >= 1 (also a harmless deflection); a refusal keeps its cost; 3 stays 3
    assert c.tolist() == [1.0, -2.0, 3.0, -2.0, 1.0, -2.0]
    # benign: a refusal's reward is capped at -1 (a lower one stays); answers and harmful prompts untouched
    assert r.tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, -3.0]
    r, _ = refusal_rules(reward.clone().fill_(0.5), cost, harmful, refused, 0.0, 1.0)
    assert r.tolist() == [0.5, 0.5, 0.5, 0.5, 0.5, -1.0]
    r, c = refusal_rules(reward, cost, harmful, refused, 0.0, 0.0)
    assert torch.equal(r, reward) and torch.equal(c, cost)


def test_trusted_benign_costs_forgive_only_mild_alarms_on_benign_prompts():
    """Benign-pool answers with d < c <= margin are brought to d (no rectified penalty); clear harm and every
    harmful-pool answer keep their cost; margin <= d changes nothing."""
    from safealign.train.constraints import ConstraintConfig, Rectified
    from safealign.train.rollout import trusted_benign_costs

    cost = torch.tensor([-1.0, 0.5, 1.5, 2.5, 0.5, 3.0])
    harmful = torch.tensor([False, False, False, False, True, True])
    out = trusted_benign_costs(cost, harmful, 0.0, 2.0)
    assert out.tolist() == [-1.0, 0.0, 0.0, 2.5, 0.5, 3.0]
    assert torch.equal(trusted_benign_costs(cost, harmful, 0.0, 0.0), cost)
    assert trusted_benign_costs(cost, harmful, 1.0, 2.0).tolist() == [-1.0, 0.5, 1.0, 2.5, 0.5, 3.0]
    penalty = Rectified(ConstraintConfig(method="rectified")).transformed_cost(out, torch.zeros(6, dtype=torch.long))
    assert penalty.tolist() == [0.0, 0.0, 0.0, 2.5, 0.5, 3.0]


def test_adapter_input_casts_off_under_autocast_changes_no_bits(smol_tokenizer, monkeypatch):
    """peft's fp32 cast of each adapter input is a lossless round trip under bf16 autocast: dropping it
    leaves log-probs and gradients bit-identical, and the layers' own setting is restored afterwards."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import BaseTunerLayer

    from safealign.models import adapters
    from safealign.train.rollout import build_sequences, response_logprobs
    from tests.conftest import make_tiny_llama

    model = get_peft_model(make_tiny_llama(smol_tokenizer).to(torch.bfloat16),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    for name, p in model.named_parameters():  # a non-zero B, so the adapter path matters
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    batch = build_sequences([[1, 2, 3], [4, 5]], [[6, 7, 8], [9]], pad_id=0)
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    seen: list[bool] = []
    layers[0].register_forward_pre_hook(lambda mod, args: seen.append(mod.cast_input_dtype_enabled))

    def run():
        model.zero_grad()
        logp = response_logprobs(model, batch, "cpu", torch.bfloat16)[0]
        (logp * batch.response_mask).sum().backward()
        return logp.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    lp, g = run()
    assert seen == [False] and all(m.cast_input_dtype_enabled for m in layers)  # off inside, restored after
    with monkeypatch.context() as mp:
        mp.setattr(adapters, "_tuner_layers", lambda model: [])  # peft's own casts
        ref_lp, ref_g = run()
    assert seen == [False, True]
    mask = batch.response_mask.bool()
    assert torch.equal(lp[mask], ref_lp[mask])
    assert all(torch.equal(a, b) for a, b in zip(g, ref_g, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_logprobs_match_log_softmax_gather_and_its_gradient(dtype, monkeypatch):
    import safealign.train.token_logprobs as TL

    monkeypatch.setattr(TL, "CHUNK_ROWS", 3)  # several chunks and a ragged last one over 2 x 5 = 10 rows
    torch.manual_seed(0)
    logits = (torch.randn(2, 5, 37) * 4).to(dtype).requires_grad_()
    before = logits.detach().clone()
    targets = torch.randint(0, 37, (2, 5))
    g = torch.randn(2, 5)
    ref_full = torch.log_softmax(logits.float(), -1)
    ref = ref_full.gather(-1, targets[..., None]).squeeze(-1)
    (ref_grad,) = torch.autograd.grad((ref * g).sum(), logits)
    out, ent = TL.token_logprobs(logits, targets, with_entropy=True)
    assert TL.token_logprobs(logits, targets)[1] is None
    (grad,) = torch.autograd.grad((out * g).sum(), logits)
    assert out.dtype == torch.float32 and out.shape == (2, 5)
    assert torch.allclose(out, ref, atol=1e-5)
    assert grad.dtype == dtype
    assert torch.equal(logits.detach(), before)  # the backward works on copies (fp32's .float() is no copy)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert torch.allclose(grad.float(), ref_grad.float(), atol=tol)
    # the gradient's row sums are 0 (softmax minus one-hot, scaled): nothing leaks into the normaliser
    assert torch.allclose(grad.float().sum(-1), torch.zeros(2, 5), atol=5e-2 if dtype == torch.bfloat16 else 1e-5)
    assert not ent.requires_grad
    assert torch.allclose(ent, -(ref_full.exp() * ref_full).sum(-1), atol=1e-4)


def test_refusal_budget_multiplier_rises_above_the_limit_and_falls_to_zero_below():
    from safealign.train.constraints import RefusalBudget, RefusalBudgetConfig

    rb = RefusalBudget(RefusalBudgetConfig(limit=0.25, lambda_init=0.0, lambda_lr=2.0, window=8))
    harmful = torch.tensor([True, True, False, False, False, False])
    refused = torch.tensor([True, False, True, True, False, False])  # benign: 2 of 4 refused
    rb.update(refused, harmful)
    assert rb.mu == pytest.approx(2.0 * (0.5 - 0.25))  # the harmful samples' refusals do not count
    rb.update(refused, harmful)  # window: 4 of 8 -> rate 0.5 again
    assert rb.mu == pytest.approx(1.0)
    none = torch.zeros(6, dtype=torch.bool)
    rb.update(none, harmful)  # window: last 8 benign answers hold 2 refusals -> 0.25, no move
    assert rb.mu == pytest.approx(1.0)
    rb.update(none, harmful)  # 0 of 8 -> mu - 2 * 0.25
    assert rb.mu == pytest.approx(0.5)
    rb.update(none, harmful)
    assert rb.mu == 0.0  # projected: never negative
    rb.update(none, torch.ones(6, dtype=torch.bool))  # no benign sample: no step
    assert rb.mu == 0.0 and len(rb.window) == 8


def test_refusal_budget_penalises_only_refused_benign_answers_and_is_off_at_limit_one():
    from safealign.train.constraints import RefusalBudget, RefusalBudgetConfig

    rb = RefusalBudget(RefusalBudgetConfig(limit=0.1, lambda_init=3.0))
    refused = torch.tensor([True, True, False, False])
    harmful = torch.tensor([True, False, True, False])
    assert torch.equal(rb.penalty(refused, harmful), torch.tensor([0.0, 3.0, 0.0, 0.0]))
    state = rb.state_dict()
    other = RefusalBudget(RefusalBudgetConfig(limit=0.1))
    other.load_state_dict(state)
    assert other.mu == 3.0
    off = RefusalBudget(RefusalBudgetConfig(lambda_init=3.0))  # limit 1: off
    assert off.mu == 0.0 and off.metrics() == {}
    off.update(refused, harmful)
    assert off.mu == 0.0 and not torch.any(off.penalty(refused, harmful))


def test_refusal_budget_changes_batch_scaled_advantages_but_not_group_scaled_ones_past_the_flip():
    """Why the budget wants advantage_scale batch: under per-group std a refusal's advantage saturates once mu
    ranks it well below the rest of its group; with one pooled std, a larger mu pushes it harder than the
    other groups' samples."""
    from safealign.train.constraints import RefusalBudget, RefusalBudgetConfig

    reward = torch.tensor([0.5, 0.6, 0.7, 0.8, 1.0, 0.0, 0.2, 0.4])  # two benign groups of four
    group = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    refused = torch.tensor([True, False, False, False, False, False, False, False])
    harmful = torch.zeros(8, dtype=torch.bool)
    adv = {}
    for mu in (1.0, 5.0):
        rb = RefusalBudget(RefusalBudgetConfig(limit=0.0, lambda_init=mu))
        shaped = reward - rb.penalty(refused, harmful)
        adv[mu] = {s: L.group_advantages(shaped, group, s) for s in ("group", "batch")}
    # group std: the refusal's advantage saturates near -(k - 1) / sqrt(k) = -1.5 once it is far below the rest
    assert float(adv[1.0]["group"][0]) == pytest.approx(float(adv[5.0]["group"][0]), rel=0.05)
    assert float(adv[5.0]["group"][0]) == pytest.approx(-1.5, rel=0.01)
    assert adv[5.0]["batch"][0] < adv[1.0]["batch"][0] - 0.05  # the refusal pushed harder
    assert adv[5.0]["batch"][0] / adv[5.0]["batch"][4].abs() < adv[1.0]["batch"][0] / adv[1.0]["batch"][4].abs()
