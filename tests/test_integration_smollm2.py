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


def test_two_rl_steps_on_real_smollm2(tmp_path):
    """The real policy through the whole loop: LoRA, reference = adapter off, rectified constraint, real data."""
    import json

    from safealign.train.config import AlignConfig
    from safealign.train.trainer import RLTrainer
    from tests.fake_scorers import LengthScorer

    cfg = AlignConfig.from_dict({
        "out_dir": str(tmp_path / "run"), "steps": 2, "prompts_per_step": 2, "samples_per_prompt": 2,
        "sampling": {"max_new_tokens": 12}, "checkpoint_every": 0, "minibatch_size": 4,
        "constraint": {"method": "rectified", "threshold": 0.0},
        "data": {"harmful": ["advbench"], "benign": ["alpaca"], "harmful_fraction": 0.5}})
    trainer = RLTrainer(cfg, reward_scorer=LengthScorer("reward", 1.0), cost_scorer=LengthScorer("cost", -1.0, 15.0),
                        log=lambda s: None)
    summary = trainer.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and summary["steps"] == 2
    assert all(r["completions"] == 4 and r["kl"] >= 0 for r in rows)
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
