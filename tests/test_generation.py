from __future__ import annotations

import pytest
import torch

from safealign.data.records import user_prompt
from safealign.generation import HFEngine, SamplingConfig
from safealign.generation.engine import sample_next

PROMPTS = [user_prompt("Hi"), user_prompt("Write a much longer prompt about the history of the Roman empire, please.")]


def teacher_forced_logprobs(engine: HFEngine, prompt_ids: list[int], gen_ids: list[int]) -> torch.Tensor:
    full = torch.tensor([prompt_ids + gen_ids])
    with torch.no_grad():
        logp = engine.model(full).logits.float().log_softmax(-1)
    return logp[0, len(prompt_ids) - 1:-1].gather(-1, full[0, len(prompt_ids):, None]).squeeze(-1)


def test_shapes_and_logprobs_match_teacher_forcing(tiny_llama, smol_tokenizer):
    engine = HFEngine(tiny_llama, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=12, n=3, temperature=1.0, top_p=1.0, batch_size=4)
    out = engine.generate(PROMPTS, cfg)
    assert [len(row) for row in out] == [3, 3]
    enc = engine.encode(PROMPTS, cfg)
    for i, row in enumerate(out):
        for g in row:
            assert g.prompt_index == i and 1 <= g.num_tokens <= 12
            assert len(g.logprobs) == g.num_tokens
            ref = teacher_forced_logprobs(engine, enc[i], g.token_ids)
            torch.testing.assert_close(torch.tensor(g.logprobs), ref, atol=2e-4, rtol=0)
    assert engine.last_stats.new_tokens == sum(g.num_tokens for row in out for g in row)


def test_greedy_is_independent_of_batch_padding(tiny_llama, smol_tokenizer):
    engine = HFEngine(tiny_llama, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=10, temperature=0.0)
    together = engine.generate(PROMPTS, cfg)
    alone = [engine.generate([p], cfg)[0] for p in PROMPTS]
    for a, b in zip(together, alone, strict=True):
        assert a[0].token_ids == b[0].token_ids


def test_greedy_matches_transformers_generate(tiny_llama, smol_tokenizer):
    engine = HFEngine(tiny_llama, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=8, temperature=0.0)
    ours = engine.generate(PROMPTS[:1], cfg)[0][0]
    ids = torch.tensor([engine.encode(PROMPTS[:1], cfg)[0]])
    ref = tiny_llama.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                              pad_token_id=smol_tokenizer.pad_token_id)
    assert ours.token_ids == ref[0, ids.shape[1]:].tolist()[: ours.num_tokens]


def test_seed_determinism_and_variation(tiny_llama, smol_tokenizer):
    engine = HFEngine(tiny_llama, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=10, n=2, temperature=1.0, seed=3)
    a = engine.generate(PROMPTS, cfg)
    b = engine.generate(PROMPTS, cfg)
    assert [[g.token_ids for g in r] for r in a] == [[g.token_ids for g in r] for r in b]
    c = engine.generate(PROMPTS, SamplingConfig(max_new_tokens=10, n=2, temperature=1.0, seed=4))
    assert [[g.token_ids for g in r] for r in a] != [[g.token_ids for g in r] for r in c]


def test_eos_stops_and_is_kept_in_ids(smol_tokenizer):
    from tests.conftest import make_tiny_llama

    model = make_tiny_llama(smol_tokenizer)
    with torch.no_grad():  # make EOS overwhelmingly likely after any token
        model.lm_head.weight.zero_()
        model.lm_head.weight[smol_tokenizer.eos_token_id].fill_(0.0)
        model.model.norm.weight.fill_(1.0)
    eos = smol_tokenizer.eos_token_id
    bias = torch.full((model.config.vocab_size,), -50.0)
    bias[eos] = 50.0
    model.lm_head.bias = torch.nn.Parameter(bias)
    engine = HFEngine(model, smol_tokenizer)
    g = engine.generate(PROMPTS[:1], SamplingConfig(max_new_tokens=5, temperature=1.0))[0][0]
    assert g.finish_reason == "eos" and g.token_ids == [eos] and g.text == ""


def test_prefix_continuation(tiny_llama, smol_tokenizer):
    engine = HFEngine(tiny_llama, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=6, temperature=0.0)
    base = engine.generate(PROMPTS[:1], SamplingConfig(max_new_tokens=12, temperature=0.0))[0][0]
    head = smol_tokenizer.decode(base.token_ids[:6])
    cont = engine.generate(PROMPTS[:1], cfg, prefixes=[head])[0][0]
    assert (head + cont.text).startswith(head)
    with pytest.raises(ValueError, match="prefixes"):
        engine.generate(PROMPTS, cfg, prefixes=["x"])


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[5.0, 4.0, 0.0, -1.0]])
    gen = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, SamplingConfig(top_k=2, temperature=1.0), gen)) for _ in range(200)}
    assert picks <= {0, 1}
    # probs ~ [0.73, 0.27, ...]: top_p=0.5 keeps only the first token
    picks = {int(sample_next(logits, SamplingConfig(top_p=0.5, temperature=1.0), gen)) for _ in range(50)}
    assert picks == {0}
    assert int(sample_next(logits, SamplingConfig(temperature=0.0), gen)) == 0


def test_nucleus_matches_a_full_sort(monkeypatch):
    """The candidate search gives the full sort's nucleus, also for rows whose nucleus is wider than it."""
    from safealign.generation import engine as eng

    monkeypatch.setattr(eng, "NUCLEUS_CANDIDATES", 16)
    gen = torch.Generator().manual_seed(0)
    peaked = torch.randn(6, 500, generator=gen) * 6  # nucleus within 16 tokens
    flat = torch.randn(6, 500, generator=gen) * 0.1  # nucleus of hundreds of tokens: the sorted fallback
    logits = torch.cat([peaked, flat])[torch.randperm(12, generator=gen)]
    for top_p in (0.5, 0.9, 0.95):
        fast = eng.nucleus(logits, top_p)
        assert torch.equal(torch.isfinite(fast), torch.isfinite(eng._nucleus_sorted(logits, top_p)))
        kept = torch.isfinite(fast).sum(-1)
        assert kept.min() <= 16 < kept.max()  # both paths ran
        assert torch.equal(fast[torch.isfinite(fast)], logits[torch.isfinite(fast)])


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_p": 0}, {"n": 0}, {"max_new_tokens": 0}])
def test_sampling_config_validation(bad):
    from safealign.config import ConfigError

    with pytest.raises(ConfigError):
        SamplingConfig(**bad)


def test_sampling_frequencies_match_the_softmax():
    """The inverse-CDF draw samples each token with its softmax probability, per row."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.0, 0.0, 0.1, 0.9]]))
    gen = torch.Generator().manual_seed(1)
    draws = torch.stack([sample_next(logits, SamplingConfig(temperature=1.0, top_p=1.0), gen) for _ in range(4000)])
    freq0 = torch.bincount(draws[:, 0], minlength=4).float() / len(draws)
    freq1 = torch.bincount(draws[:, 1], minlength=4).float() / len(draws)
    assert torch.allclose(freq0, torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.03)
    assert torch.allclose(freq1, torch.tensor([0.0, 0.0, 0.1, 0.9]), atol=0.03)
    assert freq0[3] == 0 and freq1[:2].sum() == 0  # zero-probability tokens are never drawn


def test_contiguous_head_input_keeps_logits(tiny_llama):
    from safealign.models.loading import contiguous_lm_head_input

    ids = torch.randint(0, 100, (3, 7))
    with torch.no_grad():
        before = tiny_llama(input_ids=ids, logits_to_keep=2).logits
        contiguous_lm_head_input(tiny_llama)
        contiguous_lm_head_input(tiny_llama)  # idempotent: one hook
        after = tiny_llama(input_ids=ids, logits_to_keep=2).logits
    assert len(tiny_llama.get_output_embeddings()._forward_pre_hooks) == 1
    assert torch.allclose(before, after, atol=1e-6)


def test_lean_llama_path_matches_transformers_forward(tiny_llama, smol_tokenizer):
    """The fused-projection decoder and transformers' forward give the same samples and log-probs."""
    from safealign.generation import llama_decoder

    assert llama_decoder.supports(tiny_llama)
    prompts = [*PROMPTS, user_prompt("A third prompt of middling length.")]  # three widths: left padding
    cfg = SamplingConfig(max_new_tokens=16, n=2, temperature=1.0, top_p=0.9, seed=5, batch_size=6)
    fast = HFEngine(tiny_llama, smol_tokenizer, fast=True).generate(prompts, cfg)
    slow = HFEngine(tiny_llama, smol_tokenizer, fast=False).generate(prompts, cfg)
    for row_f, row_s in zip(fast, slow, strict=True):
        for f, s in zip(row_f, row_s, strict=True):
            assert f.token_ids == s.token_ids and f.finish_reason == s.finish_reason
            torch.testing.assert_close(torch.tensor(f.logprobs), torch.tensor(s.logprobs), atol=1e-4, rtol=0)


def test_lean_path_reads_weights_changed_between_calls(smol_tokenizer):
    from tests.conftest import make_tiny_llama

    model = make_tiny_llama(smol_tokenizer)
    engine = HFEngine(model, smol_tokenizer)
    cfg = SamplingConfig(max_new_tokens=6, temperature=0.0)
    before = engine.generate(PROMPTS[:1], cfg)[0][0]
    with torch.no_grad():
        for layer in model.model.layers:  # a rollout copy is synced in place like this
            layer.mlp.up_proj.weight.mul_(-3.0)
            layer.self_attn.k_proj.weight.mul_(2.0)
    after = engine.generate(PROMPTS[:1], cfg)[0][0]
    slow = HFEngine(model, smol_tokenizer, fast=False).generate(PROMPTS[:1], cfg)[0][0]
    assert after.token_ids == slow.token_ids
    torch.testing.assert_close(torch.tensor(after.logprobs), torch.tensor(slow.logprobs), atol=1e-4, rtol=0)
    assert after.logprobs != before.logprobs


def test_lean_path_declines_what_it_does_not_cover(smol_tokenizer):
    from peft import LoraConfig, get_peft_model

    from safealign.generation import llama_decoder
    from tests.conftest import make_tiny_llama

    peft_model = get_peft_model(make_tiny_llama(smol_tokenizer), LoraConfig(r=2, target_modules=["q_proj"]))
    assert not llama_decoder.supports(peft_model)  # unmerged adapters: transformers' forward applies them
    biased = make_tiny_llama(smol_tokenizer)
    biased.config.attention_bias = True
    assert not llama_decoder.supports(biased)
    with pytest.raises(ValueError, match="LlamaDecoder"):
        llama_decoder.LlamaDecoder(peft_model)


def test_packed_bf16_projections_give_the_same_bits(smol_tokenizer):
    """The lean decoder's prepacked bf16 weights change memory traffic, not results."""
    from safealign import hardware
    from safealign.generation import llama_decoder
    from tests.conftest import make_tiny_llama

    model = make_tiny_llama(smol_tokenizer).to(torch.bfloat16)
    ids = torch.randint(0, 500, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row
    packed = llama_decoder.LlamaDecoder(model, batch_hint=3)
    plain = llama_decoder.LlamaDecoder(model, batch_hint=3)
    for layer in plain.layers:
        for key in ("qkv", "o", "gate_up", "down"):
            layer[key].packed = None  # the F.linear fallback
    plain.head.packed = None
    if torch.backends.mkldnn.is_available():
        assert packed.layers[0]["qkv"].packed is not None
    # Bit-identical where oneDNN has native bf16 kernels (AVX-512 BF16 / AMX); on other hosts its bf16 product is
    # emulated with another summation order, so only bf16 rounding is promised there.
    same = torch.equal if hardware.cpu_has_fast_bf16() else (
        lambda u, v: torch.testing.assert_close(u, v, rtol=2e-2, atol=2e-2) is None)
    a, b = packed.start(ids, mask, 4), plain.start(ids, mask, 4)
    assert same(a, b)
    nxt = torch.tensor([5, 6, 7])
    assert same(packed.step(nxt), plain.step(nxt))
    half = llama_decoder.PackedLinear(torch.randn(8, 4, dtype=torch.float16), batch_hint=2)
    assert half.packed is None  # only bf16 and fp32 are packed
    x = torch.randn(2, 4, dtype=torch.float16)
    assert torch.equal(half(x), torch.nn.functional.linear(x, half.weight))


def test_packed_fp32_projections_match_f_linear(smol_tokenizer):
    """fp32 weights packed for MKL: F.linear's results up to fp32 rounding, at the packed batch size and at any
    other number of rows (a prefill, a short last batch), and the same greedy tokens from the decoder."""
    from safealign.generation import llama_decoder
    from tests.conftest import make_tiny_llama

    torch.manual_seed(0)
    w = torch.randn(96, 48)
    lin = llama_decoder.PackedLinear(w, batch_hint=4)
    if torch.backends.mkl.is_available():
        assert lin.kind == "mkl" and lin.packed is not None
    for shape in [(4, 48), (4, 1, 48), (3, 48), (2, 5, 48)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(lin(x), torch.nn.functional.linear(x, w), rtol=1e-5, atol=1e-5)

    model = make_tiny_llama(smol_tokenizer)  # fp32
    ids = torch.randint(0, 500, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    packed = llama_decoder.LlamaDecoder(model, batch_hint=3)
    plain = llama_decoder.LlamaDecoder(model, batch_hint=3)
    for layer in plain.layers:
        for key in ("qkv", "o", "gate_up", "down"):
            layer[key].packed = None
    plain.head.packed = None
    torch.testing.assert_close(packed.start(ids, mask, 4), plain.start(ids, mask, 4), rtol=1e-4, atol=1e-4)
    nxt = torch.tensor([5, 6, 7])
    a, b = packed.step(nxt), plain.step(nxt)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_packed_linear_falls_back_when_the_operator_rejects_the_call(monkeypatch):
    """The packed path calls a private oneDNN operator; a torch build that rejects it must not break decoding."""
    from safealign.generation import llama_decoder

    weight = torch.randn(8, 4, dtype=torch.bfloat16)
    lin = llama_decoder.PackedLinear(weight, batch_hint=2)
    lin.packed = object()  # as if packing had worked

    class Ops:
        @staticmethod
        def _linear_pointwise(*args):
            raise RuntimeError("unsupported")

    monkeypatch.setattr(torch.ops, "mkldnn", Ops)
    x = torch.randn(2, 4, dtype=torch.bfloat16)
    assert torch.equal(lin(x), torch.nn.functional.linear(x, weight)) and lin.packed is None


@pytest.mark.parametrize("fast", [True, False])
def test_shared_prefill_draws_what_a_prefill_per_row_draws(tiny_llama, smol_tokenizer, fast):
    """The n samples of a prompt prefilled once (cache rows copied) give the same tokens and log-probs as one
    prefill per row, on the lean decoder and on transformers' forward; prompts of other lengths pad left."""
    prompts = [*PROMPTS, user_prompt("A third prompt of middling length.")]
    cfg = SamplingConfig(max_new_tokens=12, n=3, temperature=1.0, seed=7, batch_size=5)  # groups split across batches
    shared = HFEngine(tiny_llama, smol_tokenizer, fast=fast).generate(prompts, cfg)
    per_row = HFEngine(tiny_llama, smol_tokenizer, fast=fast, share_prefill=False).generate(prompts, cfg)
    assert len({tuple(g.token_ids) for row in shared for g in row}) > 3  # samples differ, so rows are not mixed up
    for row_a, row_b in zip(shared, per_row, strict=True):
        for a, b in zip(row_a, row_b, strict=True):
            assert a.token_ids == b.token_ids and a.finish_reason == b.finish_reason
            torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)


def test_two_level_draw_matches_one_search_over_the_vocabulary():
    """Blocks (256 tokens) and padding (600 = 2 x 256 + 88) change no draw and no log-probability."""
    from safealign.generation.engine import sample_with_logprob

    torch.manual_seed(0)
    logits = torch.randn(6, 600) * 2
    logits[:, 250:300] = float("-inf")  # zero mass across a block boundary
    logits[1, :] = float("-inf")
    logits[1, 599] = 0.0  # all the mass on the last (padded) block's last real token
    cfg = SamplingConfig(temperature=1.0, top_p=1.0)
    for seed in range(50):
        tok, lp = sample_with_logprob(logits, cfg, torch.Generator().manual_seed(seed))
        cdf = logits.softmax(-1).cumsum(-1)  # the one-level reference, from the same uniform
        u = torch.rand(6, 1, generator=torch.Generator().manual_seed(seed)) * cdf[:, -1:]
        ref = torch.searchsorted(cdf, u, right=True).squeeze(-1)
        assert torch.equal(tok, ref)
        assert torch.allclose(lp, torch.log_softmax(logits, -1).gather(1, tok[:, None]).squeeze(1), atol=1e-5)
        assert not torch.isinf(logits.gather(1, tok[:, None])).any()
    # a tempered draw still reports the untempered model's log-probability
    tok, lp = sample_with_logprob(logits, SamplingConfig(temperature=0.7, top_p=1.0), torch.Generator().manual_seed(3))
    assert torch.allclose(lp, torch.log_softmax(logits, -1).gather(1, tok[:, None]).squeeze(1), atol=1e-5)
