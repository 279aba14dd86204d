"""RL throughput: our trainer vs TRL's GRPOTrainer on the same config, in one run. A script, not a test.

SmolLM2-135M-Instruct, 2 prompts x 4 generations, 64 new tokens, LoRA, the same KL coefficient and number of
steps, and the same cheap rule-based reward in both (so the scorers do not dominate the comparison).

    python bench/rl_throughput.py [--steps 4] [--skip-trl] [--ablate-sharing]

Prints completions/s for both, the ratio, and the achieved training GFLOP/s (estimated: 2·N FLOPs per token
for a forward pass, 4·N for forward + backward through frozen LoRA weights, N = parameters; no
separate old-log-prob pass, since one-epoch GRPO is on-policy).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time

import numpy as np
import torch

from safealign import hardware
from safealign.data.registry import load_dataset
from safealign.scoring.base import Scorer, Scores


def rule_reward(texts: list[str]) -> np.ndarray:
    """Prefers answers of about 40 words; cheap and deterministic."""
    return np.array([-abs(len(t.split()) - 40) / 40.0 for t in texts])


class RuleScorer(Scorer):
    def __init__(self, kind: str):
        self.kind = kind

    def score(self, prompts, responses) -> Scores:
        m = rule_reward(list(responses)) if self.kind == "reward" else -np.ones(len(responses))
        return Scores(m, np.zeros_like(m))


def run_ours(prompts, steps: int, beta: float, dtype: str, share_prompts: bool = True) -> dict:
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import RLTrainer

    with tempfile.TemporaryDirectory() as out:
        cfg = AlignConfig.from_dict({
            "out_dir": out, "steps": steps, "prompts_per_step": 2, "samples_per_prompt": 4, "kl_coef": beta,
            "dtype": dtype, "checkpoint_every": 0, "minibatch_size": 8, "entropy_log": False,
            "share_prompts": share_prompts,
            "sampling": {"max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0},
            "constraint": {"method": "reward_only"}})
        tr = RLTrainer(cfg, reward_scorer=RuleScorer("reward"), cost_scorer=RuleScorer("cost"),
                       harmful_prompts=[], benign_prompts=prompts, log=lambda s: None)
        tr.train_step()  # warm-up step, not timed
        tokens = {"gen": 0, "seq": 0}
        t0 = time.perf_counter()
        completions = 0
        for _ in range(steps):
            m = tr.train_step()
            completions += int(m["completions"])
            tokens["gen"] += tr.engine.last_stats.new_tokens
        wall = time.perf_counter() - t0
        n_params = sum(p.numel() for p in tr.policy.parameters())
    return {"completions": completions, "seconds": wall, "gen_tokens": tokens["gen"], "params": n_params}


def run_trl(prompts, steps: int, beta: float, dtype: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from safealign.models.loading import load_tokenizer, resolve

    # Loaded the way a TRL user would: without safealign's lm-head fix (see models/loading.py), which
    # would also speed TRL up (measured: ~13-16 s per step instead of ~16-18 s).
    model = AutoModelForCausalLM.from_pretrained(resolve("smollm2-135m-instruct"), dtype=getattr(torch, dtype))
    tok = load_tokenizer("smollm2-135m-instruct")
    ds = Dataset.from_list([{"prompt": p} for p in prompts[: 2 * (steps + 1)]])

    def reward_fn(completions, **kw):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return rule_reward(texts).tolist()

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=8, num_generations=4, max_completion_length=64,
                          max_steps=steps + 1, beta=beta, learning_rate=5e-5, logging_steps=1, report_to=[],
                          use_cpu=True, bf16=dtype == "bfloat16", save_strategy="no", temperature=1.0, top_p=1.0,
                          dataloader_num_workers=0, seed=0)
        peft_cfg = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"],
                              task_type="CAUSAL_LM")
        trainer = GRPOTrainer(model=model, reward_funcs=reward_fn, args=args, train_dataset=ds,
                              processing_class=tok, peft_config=peft_cfg)
        times: list[float] = []
        from transformers import TrainerCallback

        class Timer(TrainerCallback):
            def on_step_end(self, *a, **k):
                times.append(time.perf_counter())

        trainer.add_callback(Timer())
        t0 = time.perf_counter()
        trainer.train()
        # drop the first (warm-up) step, as for ours
        wall = times[-1] - times[0] if len(times) > 1 else time.perf_counter() - t0
    return {"completions": 8 * (len(times) - 1), "seconds": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="timed steps (after one warm-up step)")
    ap.add_argument("--beta", type=float, default=0.05, help="KL coefficient (both trainers)")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--skip-trl", action="store_true")
    ap.add_argument("--ablate-sharing", action="store_true",
                    help="also time ours with share_prompts off (each prompt run once per sample)")
    args = ap.parse_args()
    if not args.skip_trl and importlib.util.find_spec("trl") is None:
        ap.error("TRL is not installed (a dev-only dependency): pip install '.[bench]', or pass --skip-trl")
    dtype = "bfloat16" if hardware.resolve_dtype(args.dtype) == torch.bfloat16 else "float32"
    print(hardware.describe(), f"bench dtype={dtype}")
    prompts = [r.messages for r in load_dataset("alpaca-eval")][:64]
    if args.ablate_sharing:
        plain = run_ours(prompts, args.steps, args.beta, dtype, share_prompts=False)
        print(f"safealign, share_prompts off: {plain['completions']} completions in {plain['seconds']:.1f} s = "
              f"{plain['completions'] / plain['seconds']:.2f} completions/s")
    ours = run_ours(prompts, args.steps, args.beta, dtype)
    ours_cps = ours["completions"] / ours["seconds"]
    # FLOPs: generation 2N per new token; training per sequence token: reference pass 2N (when beta > 0) and the
    # grad pass 4N (forward + activations' backward through frozen weights; LoRA grads are tiny). GRPO with one
    # epoch is on-policy, so the trainer runs no separate no-grad policy pass. Sequence ~ prompt + response.
    n = ours["params"]
    # prompts here are about as long as responses; share_prompts runs each of them once for its 4 samples
    seq_tokens = ours["gen_tokens"] * (1 + 1 / 4)
    flops = 2 * n * ours["gen_tokens"] + ((2 if args.beta > 0 else 0) + 4) * n * seq_tokens
    print(f"safealign: {ours['completions']} completions in {ours['seconds']:.1f} s = {ours_cps:.2f} completions/s; "
          f"~{flops / ours['seconds'] / 1e9:.1f} GFLOP/s achieved (estimate)")
    if args.skip_trl:
        return
    trl = run_trl(prompts, args.steps, args.beta, dtype)
    trl_cps = trl["completions"] / trl["seconds"]
    print(f"TRL GRPOTrainer: {trl['completions']} completions in {trl['seconds']:.1f} s = {trl_cps:.2f} completions/s")
    print(f"ratio safealign / TRL = {ours_cps / trl_cps:.2f}x")


if __name__ == "__main__":
    main()
