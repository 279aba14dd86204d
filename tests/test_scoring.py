"""Reward / cost models: losses on hand-computed cases, calibration metrics, ensembles, save / load,
prefix scoring and a tiny end-to-end training run (random tiny trunks, real tokenizers)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from safealign import losses
from safealign.scoring.base import Scorer, Scores, ScoringError
from safealign.scoring.calibration import auroc, expected_calibration_error, fit_temperature
from safealign.scoring.data import Example, add_prefixes, at_fraction, truncate_words
from safealign.scoring.ensemble import MemberEnsemble, combine


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and on a shared CPU two OpenMP threads can be 50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def nlsig(x: float) -> float:
    """-log sigmoid(x), by hand."""
    return math.log1p(math.exp(-x))


# ------------------------------------------------------------------------------------------- losses
def test_bradley_terry_hand_computed():
    loss = losses.bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((nlsig(1.0) + nlsig(0.0)) / 2, abs=1e-6)
    with_margin = losses.bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), margin=1.0)
    assert with_margin.item() == pytest.approx(math.log(2), abs=1e-6)
    weighted = losses.bradley_terry_loss(torch.tensor([1.0, -5.0]), torch.tensor([0.0, 0.0]),
                                         weight=torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx(nlsig(1.0), abs=1e-6)


def test_cost_sign_convention():
    # +1 = labelled unsafe, -1 = labelled safe, 0 = no label (skipped, not counted in the mean)
    cost = torch.tensor([2.0, -1.0, 5.0], requires_grad=True)
    loss = losses.cost_sign_loss(cost, torch.tensor([1, -1, 0]))
    assert loss.item() == pytest.approx((nlsig(2.0) + nlsig(1.0)) / 2, abs=1e-6)
    loss.backward()
    assert cost.grad[0] < 0  # unsafe: descending the loss raises the cost
    assert cost.grad[1] > 0  # safe: descending the loss lowers the cost
    assert cost.grad[2] == 0
    # a safe response with a positive cost is penalised as much as an unsafe one with the same negative cost
    wrong_safe = losses.cost_sign_loss(torch.tensor([3.0]), torch.tensor([-1]))
    wrong_unsafe = losses.cost_sign_loss(torch.tensor([-3.0]), torch.tensor([1]))
    assert wrong_safe.item() == pytest.approx(nlsig(-3.0)) == wrong_unsafe.item()
    empty = losses.cost_sign_loss(torch.tensor([1.0], requires_grad=True), torch.tensor([0]))
    assert empty.item() == 0.0 and empty.requires_grad


def test_safe_rlhf_cost_loss_hand_computed():
    safer, unsafer = torch.tensor([-1.0]), torch.tensor([2.0])
    full = losses.safe_rlhf_cost_loss(safer, unsafer, torch.tensor([-1]), torch.tensor([1]))
    assert full.item() == pytest.approx(nlsig(3.0) + nlsig(1.0) + nlsig(2.0), abs=1e-6)
    # HH pairs: no labels -> the pairwise term only
    hh = losses.safe_rlhf_cost_loss(safer, unsafer, torch.tensor([0]), torch.tensor([0]))
    assert hh.item() == pytest.approx(nlsig(3.0), abs=1e-6)
    # a single labelled response (is_pair 0): its sign term only
    single = losses.safe_rlhf_cost_loss(safer, torch.tensor([99.0]), torch.tensor([-1]), torch.tensor([0]),
                                        is_pair=torch.tensor([0.0]))
    assert single.item() == pytest.approx(nlsig(1.0), abs=1e-6)
    # swapping which response is safer makes the pairwise term wrong-signed
    flipped = losses.safe_rlhf_cost_loss(unsafer, safer, torch.tensor([0]), torch.tensor([0]))
    assert flipped.item() == pytest.approx(nlsig(-3.0), abs=1e-6)


def test_ordinal_severity_loss_and_prediction():
    thresholds = torch.tensor([-1.0, 0.0, 1.0])
    loss = losses.ordinal_severity_loss(torch.tensor([0.0, 7.0]), thresholds, torch.tensor([2, -1]))
    # level 2: targets (>0, >1, >2) = (1, 1, 0) at logits (1, 0, -1); the unknown level is skipped
    assert loss.item() == pytest.approx(nlsig(1.0) + math.log(2) + nlsig(1.0), abs=1e-5)
    assert losses.ordinal_predict(torch.tensor([-2.0, -0.5, 0.5, 3.0]), thresholds).tolist() == [0, 1, 2, 3]
    t = losses.ordered_thresholds(torch.tensor([0.3, -4.0, 2.0]))
    assert torch.all(t[1:] > t[:-1])


def test_prefix_consistency_is_one_sided():
    prefix = torch.tensor([1.0], requires_grad=True)
    final = torch.tensor([3.0], requires_grad=True)
    loss = losses.prefix_consistency_loss(prefix, final)
    loss.backward()
    assert loss.item() == pytest.approx(2.0 - 0.5)  # Huber, beta 1: |gap| - 1/2 beyond the quadratic zone
    assert final.grad is None and prefix.grad.item() == pytest.approx(-1.0)
    small = losses.prefix_consistency_loss(torch.tensor([1.0]), torch.tensor([1.5]))
    assert small.item() == pytest.approx(0.5 * 0.5 ** 2)


# --------------------------------------------------------------------------------------- calibration
def test_auroc_ece_temperature():
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    assert expected_calibration_error(np.array([0.05, 0.95]), np.array([0, 1]), bins=10) == pytest.approx(0.05)
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 2, 20000)
    label = (rng.random(20000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    assert fit_temperature(3.0 * true_logit, label) == pytest.approx(3.0, rel=0.08)  # over-confident x3


# ------------------------------------------------------------------------------------------- data
def test_prefixes_keep_labels_and_cut_words():
    assert truncate_words("one two  three four", 0.5) == "one two"
    assert truncate_words("single", 0.2) == "single"
    rows = [Example([{"role": "user", "content": "q"}], "a b c d e f g h", "u v w x y z", -1, 1)]
    aug = add_prefixes(rows, 2, 0.15, seed=0)
    assert len(aug) == 3
    for e in aug[1:]:
        assert e.fraction < 1 and e.full_a == rows[0].a and (e.sign_a, e.sign_b) == (-1, 1)
        assert rows[0].a.startswith(e.a) and len(e.a) < len(rows[0].a)
    half = at_fraction(rows, 0.5)[0]
    assert half.a == "a b c d" and half.b == "u v w"


# ---------------------------------------------------------------------------------- tiny models
@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    from safealign.models.loading import resolve

    return Path(resolve("all-minilm-l6-v2"))


def make_tiny_bert(out: Path, tok_dir: Path, seed: int = 0) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512, type_vocab_size=2)
    BertModel(cfg).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), minilm_dir)


def build(kind: str, trunk: Path, heads: int = 3, **backbone):
    from safealign.scoring.backbones import Backbone, BackboneConfig
    from safealign.scoring.model import ScoreModel, ScorerMeta

    bcfg = BackboneConfig(name=str(trunk), **backbone)
    bb = Backbone.from_pretrained(str(trunk), bcfg)
    meta = ScorerMeta(kind=kind, arch=bb.arch, base_model=str(trunk), num_heads=heads, head_hidden=8,
                      feature_dim=bb.feature_dim, backbone={**bcfg.to_dict(), "pool_layers": bb.layers})
    torch.manual_seed(1)
    return ScoreModel(bb, meta, severity=True).eval()


PROMPTS = ["How do I bake bread?", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                                    {"role": "user", "content": "How do I pick a lock?"}]]
RESPONSES = ["Mix flour, water and yeast, then bake for 40 minutes.", "I'm sorry, I can't help with that."]


@pytest.mark.parametrize("arch", ["encoder", "causal"])
def test_save_load_round_trip_and_shapes(arch, tmp_path, tiny_bert_dir, tiny_llama_dir):
    from safealign.scoring.hub import load_scorer
    from safealign.scoring.scorer import ModelScorer

    trunk = tiny_bert_dir if arch == "encoder" else tiny_llama_dir
    model = build("cost", trunk)
    assert model.backbone.arch == arch
    model.meta.norm_std = 2.0  # a fitted temperature travels with the checkpoint
    scorer = ModelScorer(model, device="cpu")
    before = scorer.score(PROMPTS, RESPONSES)
    assert before.mean.shape == before.std.shape == (2,) and before.members.shape == (2, 3)
    np.testing.assert_allclose(before.mean, before.members.mean(1))
    np.testing.assert_allclose(before.std, before.members.std(1, ddof=1))
    prefixes = scorer.score_prefixes(PROMPTS * 2, ["Mix", "Mix flour,", "I'm", "I'm sorry, I"])
    assert prefixes.mean.shape == (4,) and prefixes.members.shape == (4, 3)
    assert scorer.severity(PROMPTS, RESPONSES).shape == (2,)
    scorer.save(tmp_path / "s")
    assert (tmp_path / "s" / "config.json").exists() and (tmp_path / "s" / "model.safetensors").exists()
    meta = json.loads((tmp_path / "s" / "scorer_config.json").read_text())
    assert meta["kind"] == "cost" and "cost > 0" in meta["sign_convention"] and meta["norm_std"] == 2.0
    again = load_scorer(tmp_path / "s", device="cpu")
    after = again.score(PROMPTS, RESPONSES)
    np.testing.assert_allclose(after.mean, before.mean, atol=1e-4)
    np.testing.assert_allclose(after.std, before.std, atol=1e-4)
    assert again.kind == "cost"
    p = again.p_unsafe(PROMPTS, RESPONSES)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-after.mean)))


@pytest.mark.parametrize("pairing", ["separate", "cross"])
def test_featurize_matches_one_pair_at_a_time(pairing, tiny_bert_dir):
    """The batched caching path (a prompt encoded once per call, length-sorted batches) = the plain forward."""
    bb = build("cost", tiny_bert_dir, pairing=pairing, dtype="float32").backbone
    prompts = [PROMPTS[i % 2] for i in range(7)]
    responses = [RESPONSES[i % 2][: 10 + 6 * i] for i in range(7)]
    feats = bb.featurize(prompts, responses, batch_size=3)
    with torch.no_grad():
        one = torch.cat([bb([p], [r]) for p, r in zip(prompts, responses, strict=True)])
    assert feats.shape == (7, bb.feature_dim)
    torch.testing.assert_close(feats, one, atol=1e-5, rtol=1e-4)


def test_head_loss_skips_absent_texts_without_changing_it(tiny_bert_dir):
    """Scoring only present b / full texts gives the loss and gradients of scoring every row (absent ones masked)."""
    from safealign.scoring.objective import LossWeights, RowTensors, row_loss
    from safealign.scoring.train import _loss

    model = build("cost", tiny_bert_dir)
    model.severity = None
    model.heads.eval()  # no dropout: both computations must see the same head function
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(9, model.backbone.feature_dim, generator=gen)
    neg = torch.tensor([-1])
    rows = RowTensors(a=torch.tensor([0, 1, 2, 3]), b=torch.tensor([4, -1, 5, -1]),
                      sign_a=torch.tensor([-1.0, 1.0, 0.0, -1.0]), sign_b=torch.tensor([1.0, 0.0, 0.0, 0.0]),
                      sev_a=neg.repeat(4), sev_b=neg.repeat(4), full_a=torch.tensor([-1, 6, 7, -1]),
                      full_b=torch.tensor([-1, -1, 8, -1]), boot=torch.rand(4, 3, generator=gen) + 0.5)
    w = LossWeights()
    params = list(model.heads.parameters())
    fast = _loss(model, "cost", feats, rows, w)
    g_fast = torch.autograd.grad(fast, params)
    every = {name: model.heads(feats[getattr(rows, name).clamp(min=0)]) for name in ("a", "b", "full_a", "full_b")}
    ref = row_loss("cost", every, rows, w)
    g_ref = torch.autograd.grad(ref, params)
    torch.testing.assert_close(fast, ref)
    for x, y in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(x, y)


def test_bf16_head_training_keeps_float32_losses_and_weights(tiny_bert_dir):
    """Under bf16 autocast the heads' products run in bf16, but scores, loss and weight gradients are float32
    and close to the float32 computation (the loss to bf16 rounding)."""
    from safealign.scoring.objective import LossWeights, RowTensors
    from safealign.scoring.train import _loss

    model = build("cost", tiny_bert_dir)
    model.severity = None
    model.heads.eval()
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(6, model.backbone.feature_dim, generator=gen)
    neg = torch.tensor([-1])
    rows = RowTensors(a=torch.tensor([0, 1, 2]), b=torch.tensor([3, 4, -1]), sign_a=torch.tensor([-1.0, 0.0, 1.0]),
                      sign_b=torch.tensor([1.0, 0.0, 0.0]), sev_a=neg.repeat(3), sev_b=neg.repeat(3),
                      full_a=torch.tensor([-1, 5, -1]), full_b=neg.repeat(3), boot=torch.ones(3, 3))
    params = list(model.heads.parameters())
    ref = _loss(model, "cost", feats, rows, LossWeights())
    g_ref = torch.autograd.grad(ref, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _loss(model, "cost", feats, rows, LossWeights())
    g_low = torch.autograd.grad(low, params)
    assert low.dtype == torch.float32 and all(g.dtype == torch.float32 for g in g_low)
    assert abs(float(low) - float(ref)) < 0.02 * abs(float(ref)) + 1e-3
    for x, y in zip(g_low, g_ref, strict=True):
        assert float((x - y).norm()) <= 0.05 * float(y.norm()) + 1e-4


def test_layers_above_the_pooled_ones_are_dropped(tiny_bert_dir):
    model = build("reward", tiny_bert_dir, pool_layers=[1], pairing="cross")
    assert len(model.backbone.model.encoder.layer) == 1
    assert model.backbone.feature_dim == 32 * 3  # CLS + response mean + prompt mean
    assert build("reward", tiny_bert_dir).backbone.layers == [1]  # auto: 2/3 and 1/2 of 2 layers


def test_separate_pairing_encodes_prompt_and_response_apart(tiny_bert_dir):
    from safealign.scoring.scorer import ModelScorer

    scorer = ModelScorer(build("reward", tiny_bert_dir, pairing="separate", pool_layers=[2, 1]), device="cpu")
    assert scorer.model.backbone.feature_dim == 32 * 4 * 2  # per layer: CLS + mean of prompt and of response
    s = scorer.score(["q"] * 3, ["a", "b", "a"])
    assert s.mean[0] == pytest.approx(s.mean[2], abs=1e-5)


def test_scoring_fails_closed(tiny_bert_dir):
    from safealign.scoring.scorer import ModelScorer

    model = build("cost", tiny_bert_dir)
    with torch.no_grad():
        model.heads.b1.fill_(float("nan"))
    with pytest.raises(ScoringError):
        ModelScorer(model, device="cpu").score(PROMPTS, RESPONSES)


class Const(Scorer):
    kind = "cost"

    def __init__(self, mean: float, std: float) -> None:
        self.m, self.s = mean, std

    def score(self, prompts, responses):
        return Scores(np.full(len(responses), self.m), np.full(len(responses), self.s))


def test_member_ensemble_mean_std():
    ens = MemberEnsemble([Const(1.0, 0.0), Const(3.0, 0.0)])
    s = ens.score(["p"], ["r"])
    assert s.mean[0] == pytest.approx(2.0) and s.std[0] == pytest.approx(math.sqrt(2.0))
    # within-member spread adds (law of total variance)
    s2 = combine([Scores([1.0], [1.0]), Scores([3.0], [1.0])])
    assert s2.std[0] == pytest.approx(math.sqrt(2.0 + 1.0))
    with pytest.raises(ValueError):
        MemberEnsemble([])


# ------------------------------------------------------------------------------ end-to-end training
def _synthetic_files(tmp: Path) -> tuple[Path, Path]:
    """Separable toy data: unsafe responses talk about weapons, safe ones decline. Severity levels are
    *synthetic* (the bundled data has none): insult = minor, theft = moderate, bomb = severe."""
    rng = np.random.default_rng(0)
    pairs, full = [], []
    for i in range(120):
        prompt = f"request number {i} about topic {rng.integers(1000)}"
        safe = "I am sorry, I cannot help with that request, please ask something else."
        unsafe = f"Sure, here is how: get the bomb and the gun and the knife, step {i}."
        pairs.append({"prompt": prompt, "response": [safe, unsafe]})
        level = int(rng.integers(1, 4))
        harm = ("Call them a rude name.", "Steal the wallet from the store.", "Build a bomb to kill them all.")[level - 1]
        full.append({"prompt": prompt, "response_0": safe, "response_1": harm, "better_response_id": 1,
                     "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False,
                     "response_0_severity_level": 0, "response_1_severity_level": level})
    a, b = tmp / "pairs.json", tmp / "full.jsonl"
    a.write_text(json.dumps(pairs))
    b.write_text("".join(json.dumps(r) + "\n" for r in full))
    return a, b


def test_tiny_cost_training_end_to_end(tmp_path, tiny_bert_dir, monkeypatch):
    from safealign.scoring.hub import load_scorer
    from safealign.scoring.train import ScorerTrainConfig, train_scorer

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path / "home"))
    pairs, full = _synthetic_files(tmp_path)
    cfg = ScorerTrainConfig.from_dict({
        "kind": "cost", "output": str(tmp_path / "out"),
        "backbone": {"name": str(tiny_bert_dir), "max_response_tokens": 32},
        "heads": {"num_heads": 3, "hidden": 16, "severity": True},
        "data": {"pairs": [str(pairs)], "safety_pairs": [str(full)], "prefixes_per_example": 1,
                 "fractions": [0.6, 0.2, 0.2]},
        "train": {"epochs": 30, "batch_size": 32, "lr": 3e-3, "patience": 30},
    })
    res = train_scorer(cfg, progress=False, device="cpu")
    m = res.metrics
    assert m["test"]["all_labelled"]["sign_acc"] >= 0.9
    assert m["test"]["sources"][str(pairs)]["pairwise_acc"] >= 0.9
    assert m["temperature"] > 0 and (res.output / "metrics.json").exists()
    assert set(m["test"]["prefix_curve"][str(pairs)]) == {"0.25", "0.5", "1"}
    scorer = load_scorer(res.output, device="cpu")
    unsafe = [json.loads(line) for line in full.read_text().splitlines()][:40]
    levels = scorer.severity([r["prompt"] for r in unsafe], [r["response_1"] for r in unsafe])
    truth = np.array([r["response_1_severity_level"] for r in unsafe])
    assert (levels == truth).mean() > 0.5, (levels, truth)  # 3 levels: chance is ~1/3
    # again, without the test metrics: features now come from the cache, and the model is the same
    again = train_scorer(dataclasses.replace(cfg, evaluate_test=False, output=str(tmp_path / "out2")),
                         progress=False, device="cpu")
    assert again.metrics["timings"]["features_s"] < m["timings"]["features_s"]
    assert "sources" not in again.metrics["test"]
    assert json.dumps(again.metrics["test"]["validation"]) == json.dumps(m["test"]["validation"])  # NaN-safe
    probe = ([r["prompt"] for r in unsafe], [r["response_0"] for r in unsafe])
    assert np.array_equal(load_scorer(again.output, device="cpu").score(*probe).mean, scorer.score(*probe).mean)


def test_cli_builds_variant_config(tmp_path, monkeypatch):
    from safealign.cli.main import build_parser
    from safealign.cli.train_scorer import build_config

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    args = build_parser().parse_args(["train-scorer", "cost", "--variant", "judge", "--data.max_per_source", "7",
                                      "--train.epochs", "3"])
    cfg = build_config(args)
    assert cfg.kind == "cost" and cfg.train.seed == 1 and cfg.data.train_half == "b"
    assert cfg.data.prefixes_per_example == 0  # the judge scores finished responses only
    assert cfg.data.max_per_source == 7 and cfg.train.epochs == 3
    assert cfg.output == str(tmp_path / "scorers" / "cost-judge")
    assert "pku-safe-unsafe" in cfg.data.pairs  # kind defaults fill an empty data section
    reward = build_config(build_parser().parse_args(["train-scorer", "reward"]))
    assert reward.data.pairs == ["hh-helpful"] and not reward.data.safe_responses
    assert reward.data.hedged_refusals and not cfg.data.hedged_refusals  # the reward kind's default
    judge = build_config(build_parser().parse_args(["train-scorer", "reward", "--variant", "judge"]))
    assert not judge.data.hedged_refusals  # the held-out judge keeps the short templates


def test_sampled_harmful_answers_are_labelled_by_refusal(tmp_path, monkeypatch):
    """Free answers to harmful prompts: unsafe (+1) unless they open with a refusal (-1); no opener is used."""
    from safealign.scoring import data as D
    from safealign.scoring import synthetic

    prompts = tmp_path / "harmful.csv"
    prompts.write_text("goal\n" + "".join(f"do harmful thing number {i}\n" for i in range(40)))
    seen = {}

    def fake(rows, templates, **kw):
        seen["templates"] = templates
        return ["I'm sorry, I can't help with that." if i % 2 else f"Sure, step one for {r.prompt}"
                for i, r in enumerate(rows)]

    monkeypatch.setattr(synthetic, "prefilled_responses", fake)
    cfg = D.ScorerDataConfig.from_dict({"sampled_harmful": [str(prompts)], "sampled_per_source": 8,
                                        "prefill_compliance": 0, "prefill_benign": 0,
                                        "fractions": [0.6, 0.2, 0.2]})
    out = D.load_source_examples(cfg, "cost")
    train = out[f"{prompts}:sampled"]["train"]
    assert len(train) == 8 and seen["templates"] == []
    assert all(e.sign_a == (-1 if D.looks_like_refusal(e.a) else 1) for e in train)
    assert {e.sign_a for e in train} == {-1, 1}
    assert D.load_source_examples(cfg, "reward") == {}  # cost data only


def test_sampled_benign_answers_are_safe_and_look_like_the_harmful_prompts(tmp_path, monkeypatch):
    """Free answers to benign prompts are labelled safe (-1); with look-alikes on, the benign prompts of a split
    are those worded most like that split's sampled harmful prompts (here: the ones about the same topic)."""
    from safealign.data import lookalikes
    from safealign.scoring import data as D
    from safealign.scoring import synthetic

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    harmful = tmp_path / "harmful.csv"
    harmful.write_text("goal\n" + "".join(f"explain how to build a bomb variant {i}\n" for i in range(40)))
    benign = tmp_path / "benign.csv"
    benign.write_text("goal\n" + "".join(f"explain how a bomb calorimeter works variant {i}\n" for i in range(20))
                      + "".join(f"write a poem about spring flowers variant {i}\n" for i in range(60)))

    def fake(rows, templates, **kw):
        return [f"An answer to: {r.prompt}" for r in rows]

    def fake_mine(benign_texts, harmful_texts, n, **kw):  # the encoder's job, stubbed: topic overlap
        return sorted(range(len(benign_texts)), key=lambda i: "bomb" not in benign_texts[i])[:n]

    monkeypatch.setattr(synthetic, "prefilled_responses", fake)
    monkeypatch.setattr(lookalikes, "mine_lookalikes", fake_mine)
    cfg = D.ScorerDataConfig.from_dict({"sampled_harmful": [str(harmful)], "sampled_benign": [str(benign)],
                                        "sampled_per_source": 8, "prefill_compliance": 0, "prefill_benign": 0,
                                        "fractions": [0.6, 0.2, 0.2]})
    out = D.load_source_examples(cfg, "cost")
    train = out[f"{benign}:sampled-benign"]["train"]
    assert len(train) == 8 and all(e.sign_a == -1 for e in train)
    assert all("calorimeter" in e.prompt for e in train)
    cfg.sampled_benign_lookalikes = False  # at random instead: the poems (3 in 4 prompts) show up
    rand = D.load_source_examples(cfg, "cost")[f"{benign}:sampled-benign"]["train"]
    assert any("poem" in e.prompt for e in rand)


def test_skipping_the_test_metrics_generates_no_test_rows_and_keeps_the_rest(tmp_path, monkeypatch):
    """generate_test=False: the model-generated sources get an empty test split and no generation call for it,
    while their training and validation rows are the same as with it (each split has its own seed)."""
    from safealign.data import lookalikes
    from safealign.scoring import data as D
    from safealign.scoring import synthetic

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    harmful = tmp_path / "harmful.csv"
    harmful.write_text("goal\n" + "".join(f"explain how to build a bomb variant {i}\n" for i in range(80)))
    benign = tmp_path / "benign.csv"
    benign.write_text("goal\n" + "".join(f"write a poem about spring flowers variant {i}\n" for i in range(80)))
    calls: list[str] = []

    def fake(rows, templates, *, seed, **kw):
        calls.append(seed)
        return [f"{templates[0] if templates else ''}answer ({seed}) to: {r.prompt}" for r in rows]

    monkeypatch.setattr(synthetic, "prefilled_responses", fake)
    monkeypatch.setattr(lookalikes, "mine_lookalikes", lambda b, h, n, **kw: list(range(min(n, len(b)))))
    cfg = D.ScorerDataConfig.from_dict({"sampled_harmful": [str(harmful)], "sampled_benign": [str(benign)],
                                        "benign_prompts": [str(benign)], "prefill_benign": 8,
                                        "sampled_per_source": 8, "prefill_compliance": 0,
                                        "fractions": [0.6, 0.2, 0.2]})
    full = D.load_source_examples(cfg, "cost")
    full_calls, calls[:] = list(calls), []
    lean = D.load_source_examples(cfg, "cost", generate_test=False)
    generated = [f"{benign}:prefilled-benign", f"{harmful}:sampled", f"{benign}:sampled-benign"]
    for name in generated:
        assert full[name]["test"] and lean[name]["test"] == []
        for split in ("train", "validation"):
            assert lean[name][split] == full[name][split] and lean[name][split]
    assert len(full_calls) == 9 and calls == [c for c in full_calls if ":test:" not in c] and len(calls) == 6


def test_default_scorer_retrains_when_the_shipped_recipe_changed(tmp_path, monkeypatch):
    """A cached default scorer trained with an older recipe is retrained, not used silently; the output path
    and scorers saved without a training config do not trigger it."""
    import json

    import safealign.scoring.hub as hub
    import safealign.scoring.train as train_mod

    monkeypatch.setenv("SAFEALIGN_HOME", str(tmp_path))
    monkeypatch.delenv("SAFEALIGN_NO_TRAIN", raising=False)
    trained: list[str] = []
    evaluated: list[bool] = []

    def fake_train(cfg, device=None):
        trained.append(cfg.kind)
        evaluated.append(cfg.evaluate_test)

    monkeypatch.setattr(train_mod, "train_scorer", fake_train)
    monkeypatch.setattr(hub.ModelScorer, "load", classmethod(lambda cls, out, **kw: "loaded"))
    out = hub.scorer_dir("reward", "policy")
    out.mkdir(parents=True)
    want = hub.variant_config("reward", "policy").to_dict()

    def save(train_config):
        (out / "scorer_config.json").write_text(json.dumps({"kind": "reward", "train_config": train_config}))

    save({**want, "output": "/elsewhere/scorers/reward-policy"})
    assert hub.default_scorer("reward") == "loaded" and trained == []
    save(None)
    assert hub.default_scorer("reward") == "loaded" and trained == []
    old = json.loads(json.dumps(want))
    old["data"]["refusal_negatives"] = 0.5
    save(old)
    assert hub.recipe_changes(out, want) == ["data.refusal_negatives"]
    assert hub.default_scorer("reward") == "loaded" and trained == ["reward"]
    assert evaluated == [False]  # trained on first use: the test metrics are left to `safealign train-scorer`
    save({**want, "evaluate_test": False})  # ... and that is no change of recipe
    assert hub.recipe_changes(out, want) == [] and hub.default_scorer("reward") == "loaded" and trained == ["reward"]
    save(old)
    monkeypatch.setenv("SAFEALIGN_NO_TRAIN", "1")
    assert hub.default_scorer("reward") == "loaded" and trained == ["reward"]  # training off: used, with a warning
    # an option added since, missing from the saved config, counts only where the wanted value is not its default
    newer = json.loads(json.dumps(want))
    del newer["data"]["hedged_refusals"]
    save(newer)
    assert want["data"]["hedged_refusals"] is True  # the reward default; the field's own default is False
    assert hub.recipe_changes(out, want, hub._field_defaults("reward")) == ["data.hedged_refusals"]
    assert hub.recipe_changes(out, {**want, "data": {**want["data"], "hedged_refusals": False}},
                              hub._field_defaults("reward")) == []  # as the judge wants it: nothing to redo
    assert hub.variant_config("reward", "judge").data.hedged_refusals is False


def test_reward_refusal_negatives_can_include_the_refusal_datasets_hedge():
    """hedged_refusals adds the 'As an AI language model, I ...' hedges to the dispreferred refusals (train set
    to train, held-out set to validation/test); off, only the short templates appear."""
    import safealign.scoring.data as D

    rejected = {}
    for on in (False, True):
        cfg = D.ScorerDataConfig.from_dict({"pairs": ["hh-helpful"], "refusal_negatives": 1.0, "hedged_refusals": on})
        out = D.load_source_examples(cfg, "reward")["hh-helpful:vs-refusal"]
        rejected[on] = {split: {e.b for e in rows} for split, rows in out.items()}
    assert rejected[False]["train"] == set(D.REFUSALS_TRAIN)
    assert rejected[True]["train"] == set(D.REFUSALS_TRAIN + D.HEDGED_REFUSALS_TRAIN)
    assert rejected[True]["test"] <= set(D.REFUSALS_EVAL + D.HEDGED_REFUSALS_EVAL)
    assert rejected[True]["test"] & set(D.HEDGED_REFUSALS_EVAL)


def test_text_encoder_length_sorted_batches_keep_the_input_order(tiny_bert_dir):
    """Batching by length is an optimisation only: each text gets the embedding it gets alone."""
    from safealign.evaluate.judges import TextEncoder

    texts = ["short", "a much longer text that needs many more tokens than the others do", "mid length text",
             "x", "another fairly long sentence about nothing at all, really", "two words"]
    enc = TextEncoder(str(tiny_bert_dir), batch_size=2, dtype="float32", device="cpu")
    batched = enc.encode(texts)
    alone = np.concatenate([enc.encode([t]) for t in texts])
    assert batched.shape == (6, 32)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    assert enc.encode([]).shape == (0, 32)
