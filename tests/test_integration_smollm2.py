"""Integration: the real embedded SmolLM2-135M-Instruct (pulled by `make test` before pytest runs)."""

from __future__ import annotations

import pytest

from safealign.data.records import user_prompt
from safealign.generation import HFEngine, SamplingConfig

pytestmark = pytest.mark.integration


def test_smollm2_pulled_checkpoint_is_plain_and_chats(smol_dir):
    import json

    cfg = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in cfg and (smol_dir / "model.safetensors").exists()
    engine = HFEngine.from_pretrained(str(smol_dir))
    out = engine.generate([user_prompt("What is the capital of France?")],
                          SamplingConfig(max_new_tokens=24, temperature=0.0))
    text = out[0][0].text
    assert "Paris" in text, text
