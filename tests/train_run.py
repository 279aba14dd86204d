"""A tiny, fully deterministic training run (used in-process and as a subprocess by the resume tests)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from safealign.models.loading import load_tokenizer  # noqa: E402
from safealign.train.config import AlignConfig  # noqa: E402
from safealign.train.trainer import RLTrainer  # noqa: E402
from tests.conftest import make_tiny_llama  # noqa: E402
from tests.fake_scorers import LengthScorer  # noqa: E402


def make_trainer(out_dir: str, steps: int, method: str = "rectified", estimator: str = "grpo", cost=None,
                 **overrides) -> RLTrainer:
    tok = load_tokenizer("smollm2-135m-instruct")
    cfg = AlignConfig.from_dict({
        "out_dir": out_dir, "steps": steps, "prompts_per_step": 2, "samples_per_prompt": 3, "estimator": estimator,
        "dtype": "float32", "sampling": {"max_new_tokens": 8}, "checkpoint_every": 1, "minibatch_size": 4,
        "lr": 1e-3, "constraint": {"method": method, "threshold": 0.0}, **overrides})
    harmful = [[{"role": "user", "content": f"harmful request number {i}"}] for i in range(7)]
    benign = [[{"role": "user", "content": f"benign request number {i}"}] for i in range(5)]
    return RLTrainer(cfg, policy=make_tiny_llama(tok), tokenizer=tok, reward_scorer=LengthScorer("reward", 1.0),
                     cost_scorer=cost or LengthScorer("cost", -1.0, 15.0), harmful_prompts=harmful,
                     benign_prompts=benign, log=lambda s: None)


if __name__ == "__main__":
    out, steps, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume"
    make_trainer(out, steps).train(resume=resume)
