"""Shared fixtures: tiny random models with the real SmolLM2 tokenizer, so unit tests run in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def smol_dir() -> Path:
    """The pulled SmolLM2 checkpoint (pulled on first use; `make test` pulls it beforehand)."""
    from safealign.models.loading import resolve

    return Path(resolve("smollm2-135m-instruct"))


@pytest.fixture(scope="session")
def smol_tokenizer(smol_dir):
    from safealign.models.loading import load_tokenizer

    return load_tokenizer(smol_dir)


def make_tiny_llama(tokenizer, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture()
def tiny_llama(smol_tokenizer):
    return make_tiny_llama(smol_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A tiny model saved as an HF directory (for CLI and loader tests)."""
    out = tmp_path_factory.mktemp("tiny-llama")
    make_tiny_llama(smol_tokenizer).save_pretrained(out, safe_serialization=True)
    smol_tokenizer.save_pretrained(out)
    return out
