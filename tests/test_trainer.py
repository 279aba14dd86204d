"""The RL trainer on a tiny model with fake scorers: logs, checkpoints, exact resume, failure handling."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.fake_scorers import NaNScorer
from tests.train_run import make_trainer


class SureEngine:
    """A stand-in generation engine: every prompt is answered "Sure, answer i." and ends its turn."""

    def generate(self, prompts, sampling, progress=False):
        from types import SimpleNamespace

        return [[SimpleNamespace(text=f"Sure, answer {i}.", finish_reason="eos")] for i in range(len(prompts))]


@pytest.fixture
def keyed_model(tmp_path, monkeypatch):
    """An empty model folder and SAFEALIGN_HOME, enough for warmstart_dir to key a cache."""
    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path / "home"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return str(model)


ROOT = Path(__file__).resolve().parent.parent


def final_weights(out_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = out_dir / "checkpoints" / (out_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(ckpt / "trainable.safetensors"))


def test_two_steps_log_checkpoint_and_policy(tmp_path):
    tr = make_trainer(str(tmp_path / "run"), steps=2)
    before = {k: v.clone() for k, v in tr.policy.named_parameters() if v.requires_grad}
    summary = tr.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("reward", "cost", "constraint/lambda", "kl", "violating_prompts", "entropy", "tokens_per_second"):
        assert key in rows[-1]
    after = dict(tr.policy.named_parameters())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the adapter really trained
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").exists()
    assert (tmp_path / "run" / "config.yaml").exists() and summary["steps"] == 2


def test_resume_reaches_the_same_result(tmp_path):
    make_trainer(str(tmp_path / "full"), steps=4).train()
    make_trainer(str(tmp_path / "split"), steps=2).train()
    make_trainer(str(tmp_path / "split"), steps=4).train(resume=True)
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "split")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    rows = [json.loads(x) for x in (tmp_path / "split" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "train_run.py"), str(out), "6", "fresh"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "checkpoints" / "step-000002").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoints" / "latest").exists(), "no checkpoint was written before the kill"
    # only whole checkpoints exist (temporary folders may remain, but are never 'latest')
    assert not (out / "checkpoints" / "latest").read_text().startswith(".tmp")
    subprocess.run([sys.executable, str(ROOT / "tests" / "train_run.py"), str(out), "6", "resume"], env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    make_trainer(str(tmp_path / "straight"), steps=6).train()
    a, b = final_weights(tmp_path / "straight"), final_weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_non_finite_scores_skip_steps_then_abort(tmp_path):
    from safealign.train.trainer import TrainingError

    tr = make_trainer(str(tmp_path / "nan"), steps=5, cost=NaNScorer(), max_bad_steps=2)
    before = {k: v.clone() for k, v in tr.policy.named_parameters() if v.requires_grad}
    with pytest.raises(TrainingError, match="non-finite"):
        tr.train()
    for k, v in tr.policy.named_parameters():
        if v.requires_grad:
            assert torch.equal(before[k], v), "weights changed although every step was skipped"


@pytest.mark.parametrize("method", ["expected", "cvar", "dual", "pessimistic", "reward_only"])
def test_every_method_runs_a_step(tmp_path, method):
    tr = make_trainer(str(tmp_path / method), steps=1, method=method, checkpoint_every=0)
    tr.train()
    assert "constraint/lambda" in json.loads((tmp_path / method / "log.jsonl").read_text().splitlines()[-1])


def test_ppo_estimator_with_critics(tmp_path):
    tr = make_trainer(str(tmp_path / "ppo"), steps=2, estimator="ppo", checkpoint_every=0)
    tr.train()
    row = json.loads((tmp_path / "ppo" / "log.jsonl").read_text().splitlines()[-1])
    assert row["value_loss"] > 0


def test_warmstart_labels_only_the_response_and_respects_truncation(smol_tokenizer, tiny_llama):
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import _encode, supervised_warmstart

    msgs = [{"role": "user", "content": "Say hi."}]
    finished, cut = _encode(smol_tokenizer, (msgs, "Hi there.", True), 256), _encode(smol_tokenizer, (msgs, "Hi there.", False), 256)
    assert finished[0][-1] == smol_tokenizer.eos_token_id  # a finished answer ends the turn
    assert cut[0][-1] != smol_tokenizer.eos_token_id and len(cut[0]) == len(finished[0]) - 1  # a cut one does not
    ids, p_len = finished
    assert smol_tokenizer.decode(ids[p_len:]).startswith("Hi there.")  # the loss starts at the response

    torch.manual_seed(0)
    examples = [(msgs, "Hi there.", True), ([{"role": "user", "content": "Build a bomb."}], "I can't help with that.", True)]
    for p in tiny_llama.parameters():
        p.requires_grad_(True)
    stats = supervised_warmstart(tiny_llama, smol_tokenizer, examples, WarmStartConfig(steps=30, batch_size=2, lr=3e-3),
                                 torch.float32, "cpu", seed=0)
    assert stats["sft_loss_last10"] < 0.5 * stats["sft_loss_first"]  # it fits the targets


def test_warmstart_pairs_prefer_refusal_only_for_harmful_prompts():
    """Harmful: dataset refusal over the model's own answer; benign: own answer over a refusal; own refusals dropped."""
    from types import SimpleNamespace

    from safealign.scoring.data import looks_like_refusal
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_examples, warmstart_pairs

    class Engine:  # answers every third prompt with a refusal, the rest with compliance
        def __init__(self):
            self.seen: list[str] = []

        def generate(self, prompts, sampling, progress=False):
            self.seen += [p[-1]["content"] for p in prompts]
            return [[SimpleNamespace(text="I'm sorry, I can't." if i % 3 == 0 else f"Sure, answer {i}.",
                                     finish_reason="eos" if i % 2 else "length")] for i in range(len(prompts))]

    cfg = WarmStartConfig(refusals=6, safe_answers=2, self_distill=3, lookalikes=0, questions=3)
    engine = Engine()
    pairs = warmstart_pairs(cfg, engine, seed=0)
    refusal_first = [p for p in pairs if p.rejected.startswith("Sure, answer")]
    answer_first = [p for p in pairs if p.chosen.startswith("Sure, answer")]
    assert all(looks_like_refusal(p.rejected) for p in answer_first)
    assert len(engine.seen) == 12 and len(refusal_first) + len(answer_first) == 8  # a third refused: dropped
    assert {p.rejected_ends for p in refusal_first} == {True, False}  # a cut own answer does not end the turn
    assert len(pairs) == 8 + 2  # + the PKU safe-over-unsafe pairs
    harmful_prompts = {p.messages[-1]["content"] for p in refusal_first}
    assert not harmful_prompts & {p.messages[-1]["content"] for p in answer_first}
    examples = warmstart_examples(cfg, Engine(), seed=0)
    assert len(examples) == 6 + 2 + 4 and not any(t.startswith("I'm sorry, I can't") for _, t, _ in examples)

    # a run of steps x batch_size = 5 examples generates own answers for at most 5 prompts
    engine = Engine()
    budgeted = warmstart_pairs(cfg, engine, seed=0, limit=5)
    assert len(engine.seen) <= 5 and len(budgeted) <= 5
    assert len(budgeted) == 5 - sum(1 for i in range(len(engine.seen)) if i % 3 == 0)
    engine = Engine()
    assert len(warmstart_examples(cfg, engine, seed=0, limit=5)) <= 5 and len(engine.seen) <= 5


def test_warmstart_hedged_rejections_cover_the_chosen_refusal_style():
    """With hedged_rejections, benign prompts also disprefer the dataset's hedge ("As an AI language model, ..."),
    which the harmful prompts' chosen refusals use; every hedge is a refusal by the shared detector."""
    from safealign.scoring.data import (
        HEDGED_REFUSALS_EVAL,
        HEDGED_REFUSALS_TRAIN,
        REFUSALS_EVAL,
        looks_like_refusal,
    )
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_pairs

    assert all(looks_like_refusal(h) for h in HEDGED_REFUSALS_TRAIN + HEDGED_REFUSALS_EVAL)
    assert not set(HEDGED_REFUSALS_TRAIN) & set(REFUSALS_EVAL + HEDGED_REFUSALS_EVAL)
    hedged_share = {}
    for on in (False, True):
        cfg = WarmStartConfig(refusals=2, safe_answers=0, self_distill=60, hedged_rejections=on)
        benign = [p for p in warmstart_pairs(cfg, SureEngine(), seed=0) if p.chosen.startswith("Sure, answer")]
        assert len(benign) == 60
        hedged_share[on] = sum(p.rejected in HEDGED_REFUSALS_TRAIN for p in benign) / len(benign)
    assert hedged_share[False] == 0.0 and 0.25 < hedged_share[True] < 0.75  # 7 of the 13 rejections are hedges


def test_warmstart_plain_refusal_style_drops_the_hedge_and_only_that():
    """refusal_style plain: no chosen refusal of a harmful prompt opens in the 'as an AI' hedge, the count is kept,
    and the benign prompts (mined with the same draws) do not change."""
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_pairs

    chosen, benign = {}, {}
    for style in ("all", "plain"):
        cfg = WarmStartConfig(refusals=120, safe_answers=0, self_distill=20, refusal_style=style)
        pairs = warmstart_pairs(cfg, SureEngine(), seed=3)
        chosen[style] = [p.chosen for p in pairs if p.rejected.startswith("Sure, answer")]
        benign[style] = [p.messages[-1]["content"] for p in pairs if p.chosen.startswith("Sure, answer")]
    hedged = {k: sum("as an ai" in t[:200].lower() for t in v) for k, v in chosen.items()}
    assert len(chosen["plain"]) == len(chosen["all"]) == 120
    assert hedged["all"] > 20 and hedged["plain"] == 0  # about 40% of the dataset's responses hedge
    assert benign["plain"] == benign["all"]


def test_warmstart_refused_only_keeps_refusing_targets_and_the_cache_key_of_older_runs(tmp_path):
    """refused_only: every chosen response of a harmful prompt refuses (the dataset also answers some plainly), the
    count is kept, the benign prompts do not change; at its default the warm start's cache key is unchanged."""
    from safealign.scoring.data import looks_like_refusal
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_dir, warmstart_pairs

    chosen, benign = {}, {}
    for on in (False, True):
        cfg = WarmStartConfig(refusals=120, safe_answers=0, self_distill=20, refused_only=on)
        pairs = warmstart_pairs(cfg, SureEngine(), seed=3)
        chosen[on] = [p.chosen for p in pairs if p.rejected.startswith("Sure, answer")]
        benign[on] = [p.messages[-1]["content"] for p in pairs if p.chosen.startswith("Sure, answer")]
    answering = {k: sum(not looks_like_refusal(t) for t in v) for k, v in chosen.items()}
    assert len(chosen[True]) == len(chosen[False]) == 120
    assert answering[False] > 10 and answering[True] == 0  # about a quarter of the dataset's responses answer
    assert benign[True] == benign[False]
    (tmp_path / "config.json").write_text("{}")  # a model directory, as far as the cache key cares
    key = {on: warmstart_dir(str(tmp_path), WarmStartConfig(refused_only=on), 0, 8, 16, ["q_proj"])[2]
           for on in (False, True)}
    assert "refused_only" not in key[False]["cfg"] and key[True]["cfg"]["refused_only"] is True
    assert "contrasts" not in key[False]["cfg"] and "contrasts_sha1" not in key[False]


def test_warmstart_own_rejections_push_down_the_models_own_refusal_of_each_benign_prompt(tmp_path):
    """benign_rejections own: each benign pair disprefers an opener plus the model's own continuation for that
    prompt (generated with the opener as prefix, cut ones do not end the turn); harmful pairs, the benign prompts
    and the default's pairs and cache key do not change."""
    from types import SimpleNamespace

    from safealign.config import ConfigError
    from safealign.scoring.data import looks_like_refusal
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_dir, warmstart_pairs

    class Engine:  # answers plainly; with a prefix, continues it naming the prompt
        def __init__(self):
            self.calls: list[tuple[int, int, list | None]] = []

        def generate(self, prompts, sampling, prefixes=None, progress=False):
            self.calls.append((len(prompts), sampling.max_new_tokens, prefixes))
            if prefixes is None:
                return [[SimpleNamespace(text=f"Sure, answer {i}.", finish_reason="eos")] for i in range(len(prompts))]
            return [[SimpleNamespace(text=f" help with '{p[-1]['content']}'.", finish_reason="eos" if i % 2 else "length")]
                    for i, p in enumerate(prompts)]

    pairs, engines = {}, {}
    for mode in ("templates", "own"):
        engines[mode] = Engine()
        cfg = WarmStartConfig(refusals=20, safe_answers=0, self_distill=30, benign_rejections=mode, rejection_tokens=12)
        pairs[mode] = warmstart_pairs(cfg, engines[mode], seed=3)
    assert [c[2] for c in engines["templates"].calls] == [None]  # the default generates nothing more
    (n_own, tokens, openers), = [c for c in engines["own"].calls if c[2] is not None]
    assert n_own == 30 and tokens == 12 and set(openers) <= set(WarmStartConfig().rejection_openers)
    benign = {m: [p for p in v if p.chosen.startswith("Sure, answer")] for m, v in pairs.items()}
    harmful = {m: [p for p in v if p.rejected.startswith("Sure, answer")] for m, v in pairs.items()}
    assert harmful["own"] == harmful["templates"] and len(harmful["own"]) == 20
    assert [p.messages for p in benign["own"]] == [p.messages for p in benign["templates"]] and len(benign["own"]) == 30
    for p in benign["own"]:
        assert p.rejected.endswith(f" help with '{p.messages[-1]['content']}'.")  # on topic: this prompt's own
        assert any(p.rejected.startswith(o) for o in WarmStartConfig().rejection_openers)
        assert looks_like_refusal(p.rejected)
    assert {p.rejected_ends for p in benign["own"]} == {True, False}
    (tmp_path / "config.json").write_text("{}")
    key = {m: warmstart_dir(str(tmp_path), WarmStartConfig(benign_rejections=m), 0, 8, 16, ["q_proj"])[2]
           for m in ("templates", "own")}
    assert not {"benign_rejections", "rejection_openers", "rejection_tokens"} & set(key["templates"]["cfg"])
    assert key["own"]["cfg"]["benign_rejections"] == "own"
    with pytest.raises(ConfigError, match="rejection_openers"):
        WarmStartConfig(benign_rejections="own", rejection_openers=[" "])


def test_warmstart_cache_key_follows_the_contrast_prompts(tmp_path, monkeypatch):
    """The built-in contrast set can change between versions: a warm start that used it is keyed by its prompts."""
    from safealign.data import contrasts
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_dir

    (tmp_path / "config.json").write_text("{}")
    cfg = WarmStartConfig(contrasts=10)
    before = warmstart_dir(str(tmp_path), cfg, 0, 8, 16, ["q_proj"])[0]
    actions = contrasts.ACTIONS
    monkeypatch.setattr(contrasts, "ACTIONS", actions[1:])
    assert warmstart_dir(str(tmp_path), cfg, 0, 8, 16, ["q_proj"])[0] != before
    monkeypatch.setattr(contrasts, "ACTIONS", actions[::-1])  # same prompts, another order: another draw
    assert warmstart_dir(str(tmp_path), cfg, 0, 8, 16, ["q_proj"])[0] != before


def test_warmstart_linear_schedule_decays_to_zero():
    from safealign.train.sft import lr_schedule

    def rates(name: str, steps: int = 4) -> list[float]:
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        sched, out = lr_schedule(opt, name, steps), []
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert rates("constant") == pytest.approx([0.1] * 4)
    assert rates("linear") == pytest.approx([0.1, 0.075, 0.05, 0.025])
    with pytest.raises(ValueError, match="lr_schedule"):
        rates("cosine")


def test_sequence_logprobs_match_unpadded_teacher_forcing(smol_tokenizer, tiny_llama):
    """The response-aligned batch (prompts left-padded, logits for response columns only) sums the same
    response log-probs as one unpadded forward per row."""
    from safealign.train.sft import _encode, _response_batch, _sequence_logprobs

    rows = [_encode(smol_tokenizer, ([{"role": "user", "content": q}], a, ends), 96) for q, a, ends in
            [("Say hi.", "Hi there, nice to meet you.", True), ("Tell me a much longer story about dragons, please.",
                                                                 "No.", True), ("Why?", "Because", False)]]
    logp, n_tok = _sequence_logprobs(tiny_llama, _response_batch(rows, smol_tokenizer.pad_token_id), torch.float32,
                                     "cpu")
    for r, (ids, p_len) in enumerate(rows):
        with torch.no_grad():
            full = tiny_llama(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)  # [L, V]
        want = full[p_len - 1:-1].gather(-1, torch.tensor(ids[p_len:])[:, None]).sum()
        assert int(n_tok[r]) == len(ids) - p_len
        torch.testing.assert_close(logp[r], want, atol=1e-4, rtol=0)


def test_length_groups_split_only_when_it_pads_less():
    from safealign.train.sft import length_groups

    def row(prompt: int, response: int) -> tuple[list[int], int]:
        return [0] * (prompt + response), prompt

    # 4 short and 4 long responses: two groups of 4 pad 4 x 15 + 4 x 110 = 500 slots instead of 8 x 110
    rows = [row(10, 100), row(10, 5), row(10, 98), row(10, 4), row(10, 5), row(10, 100), row(10, 3), row(10, 99)]
    assert sorted(map(sorted, length_groups(rows))) == [[0, 2, 5, 7], [1, 3, 4, 6]]
    assert length_groups([row(10, 20)] * 4) == [[0, 1, 2, 3]]  # nothing to gain: one batch
    assert length_groups([row(10, 5), row(10, 100), row(10, 6)]) == [[0, 2, 1]]  # no group of a single row


def test_grouped_logprobs_equal_one_batch_and_carry_gradients(smol_tokenizer, tiny_llama):
    """Length-grouped forwards give each row the log-prob of the one-batch forward, in the original order."""
    from safealign.train.sft import (
        _encode,
        _grouped_sequence_logprobs,
        _response_batch,
        _sequence_logprobs,
        length_groups,
    )

    texts = [("Say hi.", "Hi there, nice to meet you, it is a lovely day today, is it not?"), ("Why?", "No."),
             ("Tell me a story about dragons.", "Once upon a time a dragon lived in a cave by the sea and slept."),
             ("Ok.", "Sure."), ("Name a colour.", "Blue."), ("Count to ten.", "1 2 3 4 5 6 7 8 9 10, done counting.")]
    rows = [_encode(smol_tokenizer, ([{"role": "user", "content": q}], a, True), 96) for q, a in texts]
    pad = smol_tokenizer.pad_token_id
    assert len(length_groups(rows)) == 2  # the case under test: two forwards
    one, n_one = _sequence_logprobs(tiny_llama, _response_batch(rows, pad), torch.float32, "cpu")
    grouped, n_grouped = _grouped_sequence_logprobs(tiny_llama, rows, pad, torch.float32, "cpu")
    torch.testing.assert_close(grouped, one, atol=1e-4, rtol=0)
    assert n_grouped.tolist() == n_one.tolist()
    grouped.sum().backward()
    assert all(p.grad is not None for p in tiny_llama.parameters() if p.requires_grad)


def test_dpo_logprobs_run_a_shared_prompt_once_with_the_same_values_and_gradients(smol_tokenizer, tiny_llama):
    """Chosen and rejected rows of one prompt share its forward; log-probs and gradients equal the plain layout."""
    from safealign.train.rollout import response_logprobs
    from safealign.train.sft import _encode, _response_batch, _sequence_logprobs

    pairs = [("How do I pick a lock?", "I can't help with that.", "First, insert a tension wrench and rake."),
             ("Name a colour.", "Blue.", "I won't answer that, sorry.")]
    rows = [_encode(smol_tokenizer, ([{"role": "user", "content": q}], a, True), 96)
            for q, c, r in pairs for a in (c, r)]
    batch = _response_batch(rows, smol_tokenizer.pad_token_id)
    params = [p for p in tiny_llama.parameters() if p.requires_grad]
    grads = []
    for shared in (True, False):
        tiny_llama.zero_grad()
        if shared:
            logp, _ = _sequence_logprobs(tiny_llama, batch, torch.float32, "cpu")  # [4]
        else:
            lp, _, _ = response_logprobs(tiny_llama, batch, "cpu", torch.float32, share_prompts=False)
            logp = (lp * batch.response_mask).sum(-1)
        (logp * torch.tensor([1.0, -1.0, 0.5, -0.5])).sum().backward()
        grads.append((logp.detach(), [p.grad.clone() for p in params]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-4, rtol=0)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_dpo_warmstart_learns_the_prompt_conditional_preference(smol_tokenizer, tiny_llama):
    """The same refusal is preferred for one prompt and dispreferred for another: DPO must learn both."""
    from peft import LoraConfig, get_peft_model

    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import (
        PreferenceExample,
        _encode,
        _response_batch,
        _sequence_logprobs,
        preference_warmstart,
    )

    bomb, hi = [{"role": "user", "content": "Build a bomb."}], [{"role": "user", "content": "Say hi."}]
    refusal, answer = "I can't help with that.", "Hi there, nice to meet you."
    pairs = [PreferenceExample(bomb, refusal, answer), PreferenceExample(hi, answer, refusal)]
    torch.manual_seed(0)
    model = get_peft_model(tiny_llama, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                                                  task_type="CAUSAL_LM"))

    def margins() -> list[float]:  # log p(refusal) - log p(answer), per prompt
        out = []
        for msgs in (bomb, hi):
            batch = [_encode(smol_tokenizer, (msgs, text, True), 64) for text in (refusal, answer)]
            with torch.no_grad():
                logp, _ = _sequence_logprobs(model, _response_batch(batch, smol_tokenizer.pad_token_id),
                                             torch.float32, "cpu")
            out.append(float(logp[0] - logp[1]))
        return out

    before = margins()
    stats = preference_warmstart(model, smol_tokenizer, pairs, WarmStartConfig(steps=16, batch_size=2, lr=5e-3,
                                                                               objective="dpo", chosen_nll=0.0),
                                 torch.float32, "cpu", seed=0)
    after = margins()
    assert after[0] > before[0] + 1.0 and after[1] < before[1] - 1.0  # refusal up for the bomb, down for hi
    assert stats["dpo_accuracy_last10"] == 1.0
    with pytest.raises(ValueError, match="LoRA"):  # no adapter to switch off: no reference model
        preference_warmstart(torch.nn.Linear(2, 2), smol_tokenizer, pairs, WarmStartConfig(objective="dpo"),
                             torch.float32, "cpu", seed=0)


@pytest.mark.parametrize("lora", [True, False])
def test_rollout_copy_samples_from_the_trained_weights(tmp_path, lora):
    """After updates, the synced rollout copy computes the policy's own logits (merged LoRA or full weights)."""
    tr = make_trainer(str(tmp_path / "copy"), steps=2, checkpoint_every=0, lora={"enabled": lora})
    tr.train()
    policy = tr.accelerator.unwrap_model(tr.policy).eval()
    ids = torch.randint(0, 500, (2, 9))
    with torch.no_grad():
        stale = tr.rollout_copy.model(input_ids=ids).logits
        tr.rollout_copy.sync()
        synced = tr.rollout_copy.model(input_ids=ids).logits
        want = policy(input_ids=ids).logits
    assert torch.allclose(synced, want, atol=1e-4)
    assert not torch.allclose(stale, want, atol=1e-4)  # the copy really was refreshed, not shared


def test_prompt_mixture_fills_benign_slots_with_lookalikes_and_resumes():
    from safealign.train.rollout import PromptMixture

    pool = lambda tag, n: [[{"role": "user", "content": f"{tag} {i}"}] for i in range(n)]  # noqa: E731
    mix = PromptMixture(pool("harm", 5), pool("benign", 7), 0.5, seed=3, lookalike=pool("look", 4),
                        lookalike_fraction=0.5)
    prompts, harmful = mix.next(8)
    tags = [p[0]["content"].split()[0] for p in prompts]
    assert tags.count("harm") == 4 and tags.count("look") == 2 and tags.count("benign") == 2
    assert harmful == [True] * 4 + [False] * 4
    state = mix.state_dict()
    after = [mix.next(8)[0] for _ in range(3)]
    fresh = PromptMixture(pool("harm", 5), pool("benign", 7), 0.5, seed=3, lookalike=pool("look", 4),
                          lookalike_fraction=0.5)
    fresh.load_state_dict(state)
    assert [fresh.next(8)[0] for _ in range(3)] == after
    plain = PromptMixture(pool("harm", 5), pool("benign", 7), 0.5, seed=3)
    plain.load_state_dict({"cursor": {"harmful": 1, "benign": 2}})  # checkpoints from before the third pool
    assert all(p[0]["content"].split()[0] != "look" for p in plain.next(8)[0])


def test_threshold_calibrates_to_the_benign_quantile_never_lower_and_survives_resume(tmp_path):
    """d = max(d, quantile_q of the costs of the policy's answers to benign prompts), set once, checkpointed."""
    from tests.fake_scorers import PromptNumberCost

    cost = PromptNumberCost()  # the 5 benign prompts cost 0, 1, 2, 3, 4 whatever the answer
    tr = make_trainer(str(tmp_path / "q"), steps=1, cost=cost,
                      constraint={"method": "rectified", "threshold": 0.0, "threshold_quantile": 0.5,
                                  "threshold_prompts": 5})
    assert tr.calibrate_threshold() == pytest.approx(2.0)  # the median of 0..4
    tr.cfg.constraint.threshold = 3.0
    assert tr.calibrate_threshold() == pytest.approx(3.0)  # a configured d above the quantile stays
    tr.cfg.constraint.threshold = 0.0
    tr.train()
    assert tr.handler.cfg.threshold == pytest.approx(2.0)
    assert json.loads((tmp_path / "q" / "summary.json").read_text())["threshold"] == pytest.approx(2.0)
    again = make_trainer(str(tmp_path / "q"), steps=2, cost=PromptNumberCost(),
                         constraint={"method": "rectified", "threshold": 0.0, "threshold_quantile": 0.9,
                                     "threshold_prompts": 5})
    again.train(resume=True)  # resumed: d comes from the checkpoint (2), not a new calibration (3.6)
    assert again.handler.cfg.threshold == pytest.approx(2.0)
    with pytest.raises(Exception, match="pessimistic"):
        make_trainer(str(tmp_path / "p"), steps=1, method="pessimistic",
                     constraint={"method": "pessimistic", "threshold_quantile": 0.5})


def test_lookalikes_are_mined_from_their_own_datasets(tmp_path, monkeypatch):
    """``data.lookalike_from`` mines the look-alike pool from other datasets than the benign ones."""
    import safealign.data.lookalikes as lookalikes

    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in
                                 ["How do I kill a Python process?", "What is a good soup?", "How do I shoot a photo?"]))
    seen = {}

    def fake_mine(benign, harmful, n, **kw):  # the two sensitive-sounding questions, as MiniLM would rank them
        seen["candidates"] = list(benign)
        return [i for i, t in enumerate(benign) if "kill" in t or "shoot" in t][:n]

    monkeypatch.setattr(lookalikes, "mine_lookalikes", fake_mine)
    tr = make_trainer(str(tmp_path / "run"), steps=1, data={"lookalike_fraction": 0.5, "lookalike_from": [str(questions)],
                                                            "split": "all"})
    assert seen["candidates"] == ["How do I kill a Python process?", "What is a good soup?", "How do I shoot a photo?"]
    assert [m[-1]["content"] for m in tr.prompts.pools["lookalike"]] == [
        "How do I kill a Python process?", "How do I shoot a photo?"]
    assert tr.prompts.pools["benign"][0][-1]["content"].startswith("benign request")


def test_rl_start_does_not_depend_on_whether_the_warm_start_was_cached(tmp_path, monkeypatch, smol_tokenizer):
    """A warm start trained in-process draws random numbers; a cached one does not. The RL run must not care:
    ``make demo`` (which trains it) and a later ``safealign align`` (which finds it cached) start alike."""
    import safealign.train.sft as sft
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import RLTrainer
    from tests.conftest import make_tiny_llama
    from tests.fake_scorers import LengthScorer

    model_dir = tmp_path / "warm"
    make_tiny_llama(smol_tokenizer).save_pretrained(model_dir, safe_serialization=True)
    smol_tokenizer.save_pretrained(model_dir)

    def adapter_after(draws: int) -> dict[str, torch.Tensor]:
        def fake_warmstart(*args, **kw):  # stands in for training (draws) or finding the cache (no draws)
            torch.rand(draws)
            return str(model_dir)

        monkeypatch.setattr(sft, "warmstarted_model", fake_warmstart)
        cfg = AlignConfig.from_dict({"out_dir": str(tmp_path / f"run{draws}"), "model": str(model_dir), "steps": 0,
                                     "dtype": "float32", "warmstart": {"enabled": True}})
        tr = RLTrainer(cfg, tokenizer=None, reward_scorer=LengthScorer("reward", 1.0),
                       cost_scorer=LengthScorer("cost", -1.0, 15.0), harmful_prompts=[[{"role": "user", "content": "a"}]],
                       benign_prompts=[[{"role": "user", "content": "b"}]], log=lambda s: None)
        return {k: v.detach().clone() for k, v in tr.policy.named_parameters() if "lora_A" in k}

    cached, trained = adapter_after(0), adapter_after(1000)
    assert cached and cached.keys() == trained.keys()
    assert all(torch.equal(cached[k], trained[k]) for k in cached)


def _capped_dialogues(tmp_path):
    """A prompts file: one short question, one long dialogue with a short last turn, one short dialogue."""
    rows = [{"prompt": "Short question?"},
            {"prompt": [{"role": "user", "content": "x" * 500}, {"role": "assistant", "content": "y" * 200},
                        {"role": "user", "content": "And then?"}]},
            {"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                        {"role": "user", "content": "How do I trap a possum?"}]}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompt_pool_caps_the_whole_conversation(tmp_path):
    """An HH-RLHF dialogue's earlier turns are part of the rollout prompt, so they count toward the cap."""
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import load_prompt_pool

    cfg = AlignConfig.from_dict({"data": {"split": "all", "max_prompt_chars": 600}})
    pool = load_prompt_pool(cfg, [str(_capped_dialogues(tmp_path))])
    assert [m[-1]["content"] for m in pool] == ["Short question?", "How do I trap a possum?"]


def test_harmful_pool_keeps_only_prompts_its_reference_answer_refuses():
    """Safety-Tuned LLaMAs answers some of its prompts plainly; those are not trained as requests to refuse."""
    from safealign import paths
    from safealign.data.registry import load_dataset
    from safealign.scoring.data import looks_like_refusal
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import load_prompt_pool

    if paths.data_root() is None or not (paths.data_root() / "preferences").is_dir():
        pytest.skip("data folder not found")
    cfg = AlignConfig.from_dict({"data": {"max_prompt_chars": 10_000}})
    every = load_prompt_pool(cfg, ["safety-refusals"])
    kept = load_prompt_pool(cfg, ["safety-refusals"], refused_only=True)
    answer = {r.messages[-1]["content"].strip().lower(): r.meta["response"]
              for r in load_dataset("safety-refusals", split="train")}
    refused = [m for m in every if looks_like_refusal(answer[m[-1]["content"].strip().lower()])]
    assert kept == refused and 0 < len(kept) < len(every)
    # AdvBench carries no reference answer: nothing of it is dropped
    assert load_prompt_pool(cfg, ["advbench"], refused_only=True) == load_prompt_pool(cfg, ["advbench"])


def test_warmstart_questions_cap_the_whole_conversation(tmp_path):
    """The warm start's benign questions use the same cap as the RL pools (all turns count)."""
    import random

    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import _benign_prompts

    cfg = WarmStartConfig(self_distill=0, questions=10, questions_data=str(_capped_dialogues(tmp_path)))
    prompts = _benign_prompts(cfg, random.Random(0), 0, None, [], max_prompt_chars=600)
    assert sorted(m[-1]["content"] for m in prompts) == ["How do I trap a possum?", "Short question?"]


def test_guided_refusals_add_an_opener_sample_only_where_no_sample_refuses(smol_tokenizer, tiny_llama):
    import math
    import random

    from safealign.generation import Generation, HFEngine, SamplingConfig
    from safealign.train.rollout import guided_refusals

    engine = HFEngine(tiny_llama, smol_tokenizer)
    prompts = [[{"role": "user", "content": c}] for c in ("how to make a bomb", "steal a car", "bake a cake")]
    gen = lambda i, text: Generation(i, text, [1, 2], [0.0, 0.0], "eos", 5)  # noqa: E731
    rows = [[gen(0, "Sure, here is how."), gen(0, "Step 1: buy")],     # harmful, all comply -> guided
            [gen(1, "Sure."), gen(1, "I'm sorry, but I can't do that.")],  # harmful, one refusal -> not guided
            [gen(2, "Mix flour."), gen(2, "Preheat the oven.")]]        # benign -> never guided
    cfg = SamplingConfig(max_new_tokens=12, temperature=1.0, seed=3)
    opener = "I can't help with that."
    out = guided_refusals(engine, prompts, [True, True, False], rows, cfg, [opener], random.Random(0))
    assert len(out) == 1 and out[0].prompt_index == 0 and out[0].meta["guided"]
    assert out[0].text.startswith(opener)
    full = engine.encode(prompts[:1], cfg, [opener])[0]
    base = engine.encode(prompts[:1], cfg)[0]
    n_open = len(full) - len(base)
    # prompt + the sample's tokens is exactly what the continuation was conditioned on
    assert base + out[0].token_ids[:n_open] == full
    assert all(math.isnan(x) for x in out[0].logprobs[:n_open])
    assert not any(math.isnan(x) for x in out[0].logprobs[n_open:])
    assert len(out[0].token_ids) <= cfg.max_new_tokens  # the opener counts against the token budget
    assert guided_refusals(engine, prompts, [False, False, False], rows, cfg, [opener], random.Random(0)) == []


def test_guided_samples_train_but_do_not_move_the_multiplier_or_the_logged_rates(tmp_path):
    """The tiny model never refuses, so each harmful prompt gets one guided sample; λ and rates ignore it."""
    plain = make_trainer(str(tmp_path / "plain"), steps=1, checkpoint_every=0)
    plain.train()
    guided = make_trainer(str(tmp_path / "guided"), steps=1, checkpoint_every=0, guided_refusals=True)
    guided.train()
    row = lambda d: json.loads((tmp_path / d / "log.jsonl").read_text().splitlines()[-1])  # noqa: E731
    p, g = row("plain"), row("guided")
    assert p["guided"] == 0 and g["guided"] == 1  # 2 prompts per step, harmful_fraction 0.5
    assert g["completions"] == p["completions"] + 1
    for key in ("constraint/lambda", "cost", "unsafe_rate", "reward", "violating_prompts", "refusal_harmful",
                "refusal_benign"):
        assert g[key] == pytest.approx(p[key], abs=1e-9), key
    assert g["refusal_harmful"] == 0.0  # the guided sample opens with a refusal, but it is not the policy's own
    wp, wg = final_weights(tmp_path / "plain"), final_weights(tmp_path / "guided")
    assert any(not torch.equal(wp[k], wg[k]) for k in wp)  # the guided sample took part in the update


def test_shared_prompt_forward_matches_the_plain_layout_in_values_and_gradients(smol_tokenizer, tiny_llama):
    """Each distinct prompt forwarded once, its cache indexed per response: same log-probs, hidden states and
    LoRA gradients as running every prompt with every response (left-padded prompts of other lengths,
    right-padded responses of other lengths, a group of one, a one-token response)."""
    from peft import LoraConfig, get_peft_model

    from safealign.train.rollout import _shared_prompt_logits, build_sequences, response_logprobs

    model = get_peft_model(tiny_llama, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                                  init_lora_weights=False))
    enc = lambda text: smol_tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    p_long, p_short, p_one = enc("Tell me a story about a dragon and a knight."), enc("Hi!"), enc("Why is the sky blue?")
    prompts = [p_long, p_long, p_short, p_long, p_short, p_one]
    responses = [enc("Once upon a time"), enc("No."), enc("Hello there, friend"), enc("A"), enc("Hey"),
                 enc("Because of scattering of light")]
    batch = build_sequences(prompts, responses, smol_tokenizer.pad_token_id)
    mask = batch.response_mask.float()
    assert _shared_prompt_logits(model, build_sequences(prompts[:1], responses[:1], 0), "cpu", False) is None

    def run(share: bool):
        model.zero_grad(set_to_none=True)
        lp, _, hid = response_logprobs(model, batch, "cpu", torch.float32, want_hidden=True, share_prompts=share)
        ((lp * mask).sum() + hid.square().mean()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        return (lp * mask).detach(), hid.detach() * mask[..., None], grads

    plain, shared = run(False), run(True)
    torch.testing.assert_close(shared[0], plain[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared[1], plain[1], atol=1e-5, rtol=0)
    assert plain[2] and plain[2].keys() == shared[2].keys()
    for name in plain[2]:
        torch.testing.assert_close(shared[2][name], plain[2][name], atol=1e-5, rtol=1e-4, msg=name)


def test_warmstart_seed_lets_rl_seeds_share_one_cached_warm_start(keyed_model):
    """warmstart.seed fixes the warm start's seed (and so its cache) while the RL seed varies; unset, the
    run's seed keys it as before, so caches built before the option existed are still found."""
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_dir

    def where(run_seed: int, ws_seed: int | None) -> tuple:
        return warmstart_dir(keyed_model, WarmStartConfig(seed=ws_seed), run_seed, 8, 16, ["q_proj"])[:2]

    assert where(3, None) == where(7, 3)  # an explicit seed equal to the run's: the same cache
    assert where(1, 0) == where(2, 0) and where(1, 0)[1] == 0
    assert where(1, None) != where(2, None)
    key = warmstart_dir(keyed_model, WarmStartConfig(), 3, 8, 16, ["q_proj"])[2]
    assert "seed" not in key["cfg"] and key["seed"] == 3


def test_stratified_warmstart_batches_hold_each_kind_in_proportion():
    """batch_mix=stratified: each pass still visits every pair once, and each batch of 4 holds 1 or 2 of the
    35% refusal-preferring pairs (random batches give 0 to 4); without strata the old permutations come back."""
    import random

    from safealign.train.sft import _batches

    n, refuse = 256, set(random.Random(0).sample(range(256), 90))
    strata = [int(i in refuse) for i in range(n)]
    batches = list(_batches(n, 4, 128, seed=5, desc="t", strata=strata))  # two passes
    for half in (batches[:64], batches[64:]):
        assert sorted(i for b in half for i in b) == list(range(n))
    assert {sum(strata[i] for i in b) for b in batches} == {1, 2}
    plain = [sum(strata[i] for i in b) for b in _batches(n, 4, 64, seed=5, desc="t")]
    assert min(plain) == 0 and max(plain) >= 3  # what stratifying removes

    rng, old = random.Random(5), []  # the order the warm start used before strata existed
    for _ in range(2):
        extra = list(range(n))
        rng.shuffle(extra)
        old += extra
    assert [i for b in _batches(n, 4, 128, seed=5, desc="t") for i in b] == old


def test_warmstart_pairs_mark_the_refusal_preferring_side():
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_pairs

    pairs = warmstart_pairs(WarmStartConfig(refusals=30, safe_answers=5, self_distill=20), SureEngine(), seed=1)
    assert {p.refuse for p in pairs} == {True, False}
    for p in pairs:  # the model's own answer is preferred exactly on the benign side
        assert p.chosen.startswith("Sure, answer") != p.refuse


def test_warmstart_batch_mix_keeps_older_cache_keys(keyed_model):
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_dir

    key = warmstart_dir(keyed_model, WarmStartConfig(), 0, 8, 16, ["q_proj"])[2]
    assert "batch_mix" not in key["cfg"]
    with pytest.raises(Exception, match="needs objective: dpo"):
        WarmStartConfig.from_dict({"batch_mix": "stratified", "objective": "sft"})
    assert (warmstart_dir(keyed_model, WarmStartConfig(batch_mix="stratified", objective="dpo"), 0, 8, 16, ["q_proj"])[0]
            != warmstart_dir(keyed_model, WarmStartConfig(), 0, 8, 16, ["q_proj"])[0])


@pytest.mark.parametrize("violations, steps_run", [([0.0, 0.0, 1.0, 1.0, 1.0], 2),  # feasible on time: no extension
                                                   ([1.0, 1.0, 0.0, 0.0, 1.0], 4),  # extended until the window clears
                                                   ([1.0, 1.0, 1.0, 0.0, 0.0, 0.0], 5)])  # capped at extend_steps
def test_extend_steps_runs_on_only_while_the_constraint_is_violated(tmp_path, violations, steps_run):
    tr = make_trainer(str(tmp_path / "run"), steps=2, extend_steps=3, extend_window=2, extend_violation=0.1,
                      checkpoint_every=0)
    script = iter(violations)
    tr.train_step = lambda: {"violating_prompts": next(script), "completions": 1.0}
    summary = tr.train()
    assert summary["steps"] == steps_run
    assert tr.violations == violations[:steps_run]


def test_extend_steps_resumes_with_its_violation_history(tmp_path):
    tr = make_trainer(str(tmp_path / "run"), steps=2, extend_steps=3, extend_window=2, extend_violation=0.1)
    tr.train_step = lambda: {"violating_prompts": 1.0}
    tr.train()  # 5 steps, checkpointed
    again = make_trainer(str(tmp_path / "run"), steps=2, extend_steps=3, extend_window=2, extend_violation=0.1)
    assert again.load_checkpoint() and again.step == 5 and again.violations == [1.0] * 5


def test_harmful_reward_weight_zero_leaves_only_the_cost_on_harmful_prompts(tmp_path):
    """Weight 0: a harmful group whose answers all meet the constraint gets no advantage however the reward
    model ranks them, a harmful group with a violator still prefers the safe answers, and benign groups are
    untouched; weight 1 is the plain objective."""
    from types import SimpleNamespace

    reward = torch.tensor([0.9, 0.1, 0.5, 0.2, 0.8, 0.3, 0.7, 0.1, 0.4])  # [N], three groups of 3
    cost = torch.tensor([-1.0, -0.5, -2.0, -1.0, 1.5, -1.0, 0.3, 0.9, -0.2])
    group = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    harmful = torch.tensor([True] * 6 + [False] * 3)
    ro = {"reward": reward, "cost": cost, "group": group, "harmful": harmful,
          "batch": SimpleNamespace(response_mask=torch.ones(9, 2))}
    zeros = torch.zeros(9, 2)

    def adv(weight: float) -> torch.Tensor:
        tr = make_trainer(str(tmp_path / f"w{weight}"), steps=1, harmful_reward_weight=weight,
                          trusted_benign_margin=float("inf"))
        return tr._advantages(ro, zeros, zeros, None)["adv"]

    plain, costonly = adv(1.0), adv(0.0)
    assert plain[:3].abs().max() > 0.5  # weight 1: the reward ranks the safe harmful answers
    torch.testing.assert_close(costonly[:3], torch.zeros(3))
    assert costonly[4] < 0 and costonly[3] > 0 and costonly[5] > 0  # the violator is pushed down
    torch.testing.assert_close(costonly[6:], plain[6:])  # benign prompts: as before


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_weight_matches_peft_merge_and_leaves_the_base_alone(dtype):
    """The fused addmm merge equals W + peft's delta (and DoRA keeps peft's own path); W itself is untouched."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer

    from safealign.train.rollout import _merged_weight

    torch.manual_seed(0)
    for dora in (False, True):
        net = get_peft_model(torch.nn.Sequential(torch.nn.Linear(12, 10, bias=False)).to(dtype),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["0"], use_dora=dora))
        layer = next(m for m in net.modules() if isinstance(m, LoraLayer))
        torch.nn.init.normal_(layer.lora_B["default"].weight)
        base = layer.base_layer.weight.detach().clone()
        with torch.no_grad():
            got = _merged_weight(layer)
            want = base.float() + layer.get_delta_weight("default").float()
        assert got.dtype == torch.float32
        assert torch.allclose(got, want, atol=1e-5)
        assert not torch.allclose(got, base.float(), atol=1e-3)  # the adapter really contributes
        assert torch.equal(layer.base_layer.weight, base)


def test_refusal_budget_is_logged_checkpointed_and_moves_the_update(tmp_path, monkeypatch):
    """The over-refusal multiplier follows the benign refusal rate, survives a checkpoint, and its penalty
    reaches the policy update (refusals faked by text parity, so benign groups hold both kinds)."""
    import safealign.train.trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "looks_like_refusal", lambda text: len(text) % 2 == 0)
    budget = {"over_refusal": {"limit": 0.0, "lambda_init": 2.0, "lambda_lr": 1.0}}
    on = make_trainer(str(tmp_path / "on"), steps=2, **budget)
    on.train()
    rows = [json.loads(x) for x in (tmp_path / "on" / "log.jsonl").read_text().splitlines()]
    rates = [r["refusal_benign"] for r in rows]
    assert 0 < sum(rates) < len(rates)  # the fake rule refused some benign answers, not all
    window = [r["over_refusal/benign_refusal_window"] for r in rows]
    assert rows[0]["over_refusal/mu"] == pytest.approx(2.0 + window[0])  # mu + lr * (rate - 0)
    assert rows[1]["over_refusal/mu"] == pytest.approx(2.0 + window[0] + window[1])
    resumed = make_trainer(str(tmp_path / "on"), steps=2, **budget)
    assert resumed.load_checkpoint()
    assert resumed.refusal_budget.mu == pytest.approx(rows[1]["over_refusal/mu"])
    off = make_trainer(str(tmp_path / "off"), steps=2)
    off.train()
    assert "over_refusal/mu" not in json.loads((tmp_path / "off" / "log.jsonl").read_text().splitlines()[0])
    a, b = final_weights(tmp_path / "on"), final_weights(tmp_path / "off")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_warmstart_contrasts_add_prompts_and_leave_the_other_draws_alone():
    from safealign.data.registry import load_dataset
    from safealign.train.config import WarmStartConfig
    from safealign.train.sft import warmstart_pairs

    contrast_texts = {r.text for r in load_dataset("benign-contrasts", split="train")}
    benign = {}
    for n in (0, 12):
        cfg = WarmStartConfig(refusals=4, safe_answers=0, self_distill=10, questions=5, contrasts=n)
        pairs = warmstart_pairs(cfg, SureEngine(), seed=1)
        benign[n] = [p.messages[-1]["content"] for p in pairs if p.chosen.startswith("Sure, answer")]
    added = [t for t in benign[12] if t in contrast_texts]
    assert len(added) == 12 and not any(t in contrast_texts for t in benign[0])
    assert sorted(t for t in benign[12] if t not in contrast_texts) == sorted(benign[0])  # same other prompts
