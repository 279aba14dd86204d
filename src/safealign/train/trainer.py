"""The one RL trainer: rollouts -> scores -> constraint handler -> advantages -> clipped policy update.

Constraint methods differ only in their :class:`~safealign.train.constraints.ConstraintHandler`; the
estimator (``grpo`` or ``ppo``) only in how advantages are formed. ``accelerate`` wraps model and
optimizer, so the same loop runs on several GPUs under ``accelerate launch``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from safealign import hardware
from safealign import losses as L
from safealign.config import ConfigError
from safealign.data.records import Message, conversation_chars
from safealign.generation import HFEngine, SamplingConfig
from safealign.paths import atomic_write_text
from safealign.scoring.base import Scorer
from safealign.scoring.data import looks_like_refusal
from safealign.train.config import AlignConfig
from safealign.train.constraints import ConstraintHandler, RefusalBudget, build_handler
from safealign.train.rollout import (
    PromptMixture,
    RolloutCopy,
    SequenceBatch,
    build_sequences,
    guided_refusals,
    refusal_rules,
    response_logprobs,
    trusted_benign_costs,
)


class TrainingError(RuntimeError):
    """Training cannot continue safely (e.g. repeated non-finite values); the message says why."""


class NonFiniteStep(RuntimeError):
    """One step produced non-finite scores, loss or gradients; it is skipped, weights untouched."""


# Fewer answers than this give no usable quantile: calibrate on every answer, refusals included.
MIN_CALIBRATION_ANSWERS = 8


class RLTrainer:
    """Maximise reward subject to the configured cost constraint.

    ``policy``/``tokenizer``/scorers/prompt pools may be passed in (tests, notebooks); otherwise they are
    built from the config.
    """

    def __init__(
        self,
        cfg: AlignConfig,
        *,
        policy: Any = None,
        tokenizer: Any = None,
        reward_scorer: Scorer | None = None,
        cost_scorer: Scorer | None = None,
        harmful_prompts: list[list[Message]] | None = None,
        benign_prompts: list[list[Message]] | None = None,
        log: Any = print,
    ):
        from accelerate import Accelerator

        self.cfg = cfg
        self.log = log
        self.out_dir = Path(cfg.out_dir)
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available())
        self.device = str(self.accelerator.device)
        self.compute_dtype = hardware.resolve_dtype(cfg.dtype, self.device)
        _seed_everything(cfg.seed)

        self.policy_source = cfg.model
        if policy is None or tokenizer is None:
            from safealign.models.loading import load_causal_lm, load_tokenizer

            if cfg.warmstart.enabled:
                from safealign.train.sft import warmstarted_model

                self.policy_source = warmstarted_model(
                    cfg.model, cfg.warmstart, cfg.seed, cfg.dtype, self.device, cfg.lora.r, cfg.lora.alpha,
                    cfg.lora.target_modules)
                log(f"warm-started policy (also the RL reference): {self.policy_source}")
            tokenizer = load_tokenizer(self.policy_source)
            # LoRA: frozen base weights in the compute dtype; full fine-tuning keeps fp32 master weights.
            policy = load_causal_lm(self.policy_source, dtype="float32" if not cfg.lora.enabled else cfg.dtype,
                                    device=self.device)
        from safealign.models.loading import contiguous_lm_head_input

        policy = contiguous_lm_head_input(policy)
        attention = "eager" if cfg.attention == "auto" and self.device == "cpu" else cfg.attention
        if attention != "auto" and hasattr(policy, "set_attn_implementation"):
            policy.set_attn_implementation(attention)
        self.tokenizer = tokenizer
        self.ref_model = None
        # Again, now: a warm start trained in this process draws random numbers that a cached one does not, and
        # the adapter's initialisation (and all sampling below) must not depend on which of the two happened.
        _seed_everything(cfg.seed)
        if cfg.lora.enabled:
            from peft import LoraConfig as PeftLoraConfig
            from peft import get_peft_model

            policy = get_peft_model(policy, PeftLoraConfig(
                r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
        elif cfg.kl_coef > 0 or cfg.estimator == "ppo":
            self.ref_model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.policy = policy
        hidden = policy.config.hidden_size if hasattr(policy, "config") else policy.get_base_model().config.hidden_size
        self.value_heads = torch.nn.Linear(hidden, 2).to(self.device) if cfg.estimator == "ppo" else None

        params = [p for p in self.policy.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": cfg.lr}]
        if self.value_heads is not None:
            groups.append({"params": list(self.value_heads.parameters()), "lr": cfg.critic_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        self.policy, self.optimizer = self.accelerator.prepare(self.policy, self.optimizer)
        unwrapped = self.accelerator.unwrap_model(self.policy)
        self.rollout_copy = RolloutCopy(unwrapped, self.compute_dtype) if cfg.rollout_copy else None
        self.engine = HFEngine(self.rollout_copy.model if self.rollout_copy else unwrapped, tokenizer,
                               share_prefill=cfg.share_prompts)

        self.reward_scorer = reward_scorer or _load_scorer(cfg.reward_model, "reward")
        self.cost_scorer = cost_scorer or _load_scorer(cfg.cost_model, "cost")
        self.handler: ConstraintHandler = build_handler(cfg.constraint)
        self.refusal_budget = RefusalBudget(cfg.over_refusal)
        if harmful_prompts is None or benign_prompts is None:
            harmful_prompts, benign_prompts = load_prompt_pools(cfg)
        lookalike = None
        if cfg.data.lookalike_fraction > 0 and harmful_prompts and benign_prompts:
            from safealign.data.lookalikes import mine_lookalikes

            candidates = load_prompt_pool(cfg, cfg.data.lookalike_from) if cfg.data.lookalike_from else benign_prompts
            picked = mine_lookalikes([m[-1]["content"] for m in candidates],
                                     [m[-1]["content"] for m in harmful_prompts], cfg.data.lookalike_pool, seed=cfg.seed,
                                     method=cfg.data.lookalike_method)
            lookalike = [candidates[i] for i in picked]
        self.prompts = PromptMixture(harmful_prompts, benign_prompts, cfg.data.harmful_fraction, cfg.seed,
                                     lookalike, cfg.data.lookalike_fraction)
        self.step = 0
        self.bad_steps = 0
        self.violations: list[float] = []  # violating-prompt share per step: the extend_steps rule reads it
        self._tb = None

    # ------------------------------------------------------------------ log-probs
    def _forward_logprobs(self, model: Any, batch: SequenceBatch, want_entropy: bool = False,
                          want_hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return response_logprobs(model, batch, self.device, self.compute_dtype, want_entropy, want_hidden,
                                 share_prompts=self.cfg.share_prompts)

    def _ref_logprobs(self, batch: SequenceBatch) -> torch.Tensor:
        with torch.no_grad():
            if self.ref_model is not None:
                return self._forward_logprobs(self.ref_model, batch)[0]
            model = self.accelerator.unwrap_model(self.policy)
            with model.disable_adapter():
                return self._forward_logprobs(model, batch)[0]

    # ------------------------------------------------------------------ one step
    def rollout(self) -> dict[str, Any]:
        cfg = self.cfg
        prompts, is_harmful = self.prompts.next(cfg.prompts_per_step)
        sampling = SamplingConfig(**{**cfg.sampling.to_dict(), "n": cfg.samples_per_prompt,
                                     "seed": cfg.seed * 100_003 + self.step})
        t0 = time.perf_counter()
        if self.rollout_copy is not None:
            self.rollout_copy.sync()
        gens = self.engine.generate(prompts, sampling)
        flat = [g for row in gens for g in row]
        if cfg.guided_refusals:
            flat += guided_refusals(self.engine, prompts, is_harmful, gens, sampling,
                                    [o for o in cfg.guide_openers if o.strip()],
                                    random.Random(f"{cfg.seed}-guide-{self.step}"))
        gen_time = time.perf_counter() - t0
        guided = torch.tensor([bool(g.meta.get("guided")) for g in flat])  # [N] off-policy guided samples
        flat_prompts = [prompts[g.prompt_index] for g in flat]
        responses = [g.text for g in flat]
        reward = torch.as_tensor(self.reward_scorer.score(flat_prompts, responses).mean, dtype=torch.float32)
        cost = torch.as_tensor(self.cost_scorer.score(flat_prompts, responses).mean, dtype=torch.float32)
        for name, v in (("reward", reward), ("cost", cost)):
            if not torch.isfinite(v).all():
                raise NonFiniteStep(f"{int((~torch.isfinite(v)).sum())} of {v.numel()} {name} scores are not finite")
        reward = reward.clamp(-cfg.score_clip, cfg.score_clip)
        cost = cost.clamp(-cfg.score_clip, cfg.score_clip)
        group = torch.tensor([g.prompt_index for g in flat])
        harmful = torch.tensor(is_harmful)[group]  # [N] the sample's prompt came from the harmful pool
        refused = torch.tensor([looks_like_refusal(t) for t in responses], dtype=torch.bool)  # [N] policy-side rule
        if cfg.refusal_rule_cost > 0 or cfg.refusal_rule_reward > 0:
            reward, cost = refusal_rules(reward, cost, harmful, refused, cfg.refusal_rule_cost,
                                         cfg.refusal_rule_reward)
        cost = trusted_benign_costs(cost, harmful, self.handler.cfg.threshold, cfg.trusted_benign_margin)
        prompt_ids = self.engine.encode(prompts, sampling)
        batch = build_sequences([prompt_ids[g.prompt_index] for g in flat], [g.token_ids for g in flat],
                                self.tokenizer.pad_token_id)
        return {"prompts": prompts, "gens": flat, "reward": reward, "cost": cost,
                "group": group, "harmful": harmful, "guided": guided, "refused": refused, "batch": batch,
                "gen_time": gen_time, "new_tokens": sum(g.num_tokens for g in flat)}

    def _advantages(self, ro: dict[str, Any], old_logp: torch.Tensor, ref_logp: torch.Tensor,
                    old_values: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg, h = self.cfg, self.handler
        mask = ro["batch"].response_mask.to(old_logp.device).float()
        reward = ro["reward"] * torch.where(ro["harmful"], cfg.harmful_reward_weight, 1.0)  # [N]
        if self.refusal_budget.cfg.enabled:  # over-refusal constraint
            reward = reward - self.refusal_budget.penalty(ro["refused"], ro["harmful"])
        if cfg.estimator == "grpo":
            shaped = h.shaped_reward(reward, ro["cost"], ro["group"])
            return {"adv": L.group_advantages(shaped, ro["group"], cfg.advantage_scale).to(old_logp.device)}
        # PPO (Safe RLHF layout): scores at the last response token; KL shaping on both streams.
        last = (mask.sum(1).long() - 1).clamp(min=0)  # [N]
        kl = (old_logp - ref_logp) * mask  # [N, T]
        rows = torch.arange(mask.shape[0])
        r_tok = -cfg.kl_coef * kl
        c_tok = cfg.kl_coef * kl
        r_tok[rows, last] += reward.to(r_tok.device)
        c_tok[rows, last] += h.transformed_cost(ro["cost"], ro["group"]).to(c_tok.device)
        adv_r, ret_r = L.gae(r_tok, old_values[..., 0], mask, lam=cfg.gae_lambda)
        adv_c, ret_c = L.gae(c_tok, old_values[..., 1], mask, lam=cfg.gae_lambda)
        adv_r = _whiten(adv_r, mask)
        adv_c = _whiten(adv_c, mask)
        return {"adv": h.combine_advantages(adv_r, adv_c), "returns": torch.stack([ret_r, ret_c], -1)}

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        t_start = time.perf_counter()
        ro = self.rollout()
        batch: SequenceBatch = ro["batch"]
        n = batch.input_ids.shape[0]
        mb = cfg.minibatch_size
        chunks = [torch.arange(i, min(i + mb, n)) for i in range(0, n, mb)]
        self.policy.train()
        # Old log-probs, reference log-probs and old values: one no-grad pass, padded to the full width.
        t_full = batch.response_mask.shape[1]
        old_logp = torch.zeros(n, t_full, device=self.device)
        ref_logp = torch.zeros(n, t_full, device=self.device)
        old_values = torch.zeros(n, t_full, 2, device=self.device) if self.value_heads is not None else None
        entropy = torch.zeros(n, t_full, device=self.device)
        # GRPO with one pass over the batch is on-policy: the old log-probs are the current ones, so the
        # training forward supplies them (ratio 1, same gradient) and one no-grad policy pass is saved.
        on_policy = cfg.estimator == "grpo" and cfg.ppo_epochs == 1
        with torch.no_grad():
            for idx in chunks:
                sub = batch.select(idx)
                t = sub.response_mask.shape[1]
                if not on_policy:
                    lp, ent, hid = self._forward_logprobs(self.policy, sub, want_entropy=cfg.entropy_log,
                                                          want_hidden=self.value_heads is not None)
                    old_logp[idx, :t] = lp
                    if ent is not None:
                        entropy[idx, :t] = ent
                    if old_values is not None:
                        old_values[idx, :t] = self.value_heads(hid)
                if cfg.kl_coef > 0 or cfg.estimator == "ppo":
                    ref_logp[idx, :t] = self._ref_logprobs(sub)
        adv = self._advantages(ro, old_logp, ref_logp, old_values)
        mask_full = batch.response_mask.to(self.device).float()
        n_tokens = mask_full.sum()
        stats: dict[str, float] = {"loss": 0.0, "kl": 0.0, "clip_frac": 0.0, "value_loss": 0.0}
        for _ in range(cfg.ppo_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for idx in chunks:
                sub = batch.select(idx)
                t = sub.response_mask.shape[1]
                m = sub.response_mask.to(self.device).float()
                lp, ent, hid = self._forward_logprobs(self.policy, sub, want_entropy=on_policy and cfg.entropy_log,
                                                      want_hidden=self.value_heads is not None)
                if on_policy:
                    old_logp[idx, :t] = lp.detach()
                    if ent is not None:
                        entropy[idx, :t] = ent
                a = adv["adv"][idx] if adv["adv"].dim() == 1 else adv["adv"][idx, :t]
                pg, info = L.clipped_policy_loss(lp, old_logp[idx, :t], a, m, cfg.clip_eps)
                kl = L.masked_mean(L.kl_k3(lp, ref_logp[idx, :t]), m)
                loss = pg + (cfg.kl_coef * kl if cfg.estimator == "grpo" else 0.0)
                if self.value_heads is not None:
                    v = self.value_heads(hid.detach())
                    vl = L.value_loss(v, old_values[idx, :t], adv["returns"][idx, :t], m[..., None].expand_as(v),
                                      cfg.value_clip)
                    loss = loss + vl
                    stats["value_loss"] += float(vl.detach()) * float(m.sum() / n_tokens)
                weight = m.sum() / n_tokens  # token-mean over the whole batch across minibatches
                if not torch.isfinite(loss):
                    self.optimizer.zero_grad(set_to_none=True)
                    raise NonFiniteStep(f"loss is {float(loss)}")
                self.accelerator.backward(loss * weight)
                stats["loss"] += float(loss.detach()) * float(weight)
                stats["kl"] += float(kl.detach()) * float(weight)
                stats["clip_frac"] += info["clip_frac"] * float(weight)
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if not torch.isfinite(gnorm):
                self.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteStep(f"gradient norm is {float(gnorm)}")
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        for k in ("loss", "kl", "clip_frac", "value_loss"):
            stats[k] /= cfg.ppo_epochs
        own = ~ro["guided"]  # the multiplier follows the policy's own samples, not the guided ones
        cost_all = self.accelerator.gather(ro["cost"][own].to(self.device)).cpu()
        group_all = self.accelerator.gather(ro["group"][own].to(self.device)).cpu()
        self.handler.update(cost_all, group_all)
        self.refusal_budget.update(ro["refused"][own], ro["harmful"][own])
        elapsed = time.perf_counter() - t_start
        return {**stats, **self._batch_metrics(ro), "entropy": float(L.masked_mean(entropy, mask_full)),
                "grad_norm": float(gnorm), "gen_seconds": ro["gen_time"], "step_seconds": elapsed,
                "tokens_per_second": ro["new_tokens"] / elapsed, "completions": len(ro["gens"]),
                **{f"constraint/{k}": v for k, v in self.handler.metrics().items()},
                **{f"over_refusal/{k}": v for k, v in self.refusal_budget.metrics().items()}}

    def _batch_metrics(self, ro: dict[str, Any]) -> dict[str, float]:
        d = self.cfg.constraint.threshold
        own = ~ro["guided"]  # rates describe the policy, so guided samples are left out
        cost, reward, group, harmful = ro["cost"][own], ro["reward"][own], ro["group"][own], ro["harmful"][own]
        viol = (cost > d).float()
        per_prompt = torch.stack([viol[group == g].mean() for g in group.unique()])
        out = {"reward": float(reward.mean()), "cost": float(cost.mean()), "unsafe_rate": float(viol.mean()),
               "violating_prompts": float((per_prompt > self.cfg.violation_tau).float().mean()),
               "response_tokens": float(np.mean([g.num_tokens for g, o in zip(ro["gens"], own.tolist(), strict=True) if o])),
               "guided": float(ro["guided"].sum())}
        # The policy-side refusal pattern (not the evaluation's judge): whether refusing moves where it should.
        refused = ro["refused"][own].float()  # [N_own]
        if harmful.any():
            out["cost_harmful"] = float(cost[harmful].mean())
            out["refusal_harmful"] = float(refused[harmful].mean())
        if (~harmful).any():
            out["reward_benign"] = float(reward[~harmful].mean())
            out["refusal_benign"] = float(refused[~harmful].mean())
        return out

    # ------------------------------------------------------------------ loop
    def train(self, resume: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.out_dir / "config.yaml")
        resumed = resume and self.load_checkpoint()
        if not resumed and cfg.constraint.threshold_quantile > 0:  # a resumed run keeps its checkpointed d
            self.calibrate_threshold()
        log_path = self.out_dir / "log.jsonl"
        _truncate_log(log_path, self.step)
        bar = tqdm(total=cfg.steps, initial=self.step, desc=f"align[{cfg.constraint.method}]", unit="step")
        t0 = time.perf_counter()
        last: dict[str, float] = {}
        completions = 0
        try:
            while self.step < cfg.steps or self._extend(bar):
                try:
                    metrics = self.train_step()
                    self.bad_steps = 0
                except NonFiniteStep as err:
                    self.bad_steps += 1
                    self.log(f"step {self.step + 1}: skipped, weights untouched: {err}")
                    if self.bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(f"{self.bad_steps} consecutive steps had non-finite values "
                                            f"(last: {err}); stopping before the weights are corrupted") from err
                    metrics = {"skipped": 1.0}
                self.step += 1
                if "violating_prompts" in metrics:
                    self.violations.append(metrics["violating_prompts"])
                completions += int(metrics.get("completions", 0))
                last = {"step": self.step, **metrics}
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(last) + "\n")
                self._tensorboard(last)
                bar.update(1)
                bar.set_postfix({k: f"{last[k]:.3g}" for k in ("reward", "cost", "constraint/lambda") if k in last})
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
        wall = time.perf_counter() - t0
        self.save_checkpoint()
        summary = {"steps": self.step, "wall_seconds": wall, "policy_source": self.policy_source, "completions_per_second": completions / max(wall, 1e-9),
                   "last": last, "threshold": cfg.constraint.threshold,
                   "policy_dir": str(self.save_policy(self.out_dir / "model"))}
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _extend(self, bar: Any) -> bool:
        """Past ``steps``: one more step while the recent violating-prompt share exceeds ``extend_violation``."""
        cfg = self.cfg
        recent = self.violations[-cfg.extend_window:]
        if self.step >= cfg.steps + cfg.extend_steps or not recent or sum(recent) / len(recent) <= cfg.extend_violation:
            return False
        if self.step == cfg.steps:
            self.log(f"step {self.step}: {sum(recent) / len(recent):.2f} of prompts still violate over the last "
                     f"{len(recent)} steps (> {cfg.extend_violation}); extending, up to {cfg.extend_steps} steps")
        bar.total = self.step + 1
        bar.refresh()
        return True

    def calibrate_threshold(self) -> float:
        """d = max(d, quantile_q of the costs of the policy's answers to held-in benign prompts).

        A cost model whose offset drifted harsh calls some plain answers to benign requests unsafe, and a
        constraint that prices every cost above d then buys refusals of benign requests. Answers to benign
        prompts are safe by construction, so their cost distribution says where this cost model's line
        should sit for this policy; d only ever rises (the configured d stays the floor).
        """
        c = self.cfg.constraint
        pool = self.prompts.benign_for_calibration()
        if not pool:
            raise ConfigError("constraint.threshold_quantile needs benign prompts (data.benign) to calibrate on")
        prompts = random.Random(self.cfg.seed + 1).sample(pool, min(c.threshold_prompts, len(pool)))
        sampling = SamplingConfig(**{**self.cfg.sampling.to_dict(), "n": 1, "seed": self.cfg.seed * 100_003 - 1})
        if self.rollout_copy is not None:
            self.rollout_copy.sync()
        texts = [row[0].text for row in self.engine.generate(prompts, sampling)]
        # Refusals are safe but say nothing about where answers sit (a warm-started policy refuses some
        # look-alikes): calibrate on the answers, or on everything when too few remain.
        keep = [i for i, t in enumerate(texts) if not looks_like_refusal(t)]
        if len(keep) < MIN_CALIBRATION_ANSWERS:
            keep = list(range(len(texts)))
        cost = np.asarray(self.cost_scorer.score([prompts[i] for i in keep], [texts[i] for i in keep]).mean,
                          dtype=np.float64)  # [K]
        if not np.isfinite(cost).all():
            raise TrainingError("threshold calibration: the cost model returned non-finite scores")
        q = float(np.quantile(cost, c.threshold_quantile))
        old, c.threshold = c.threshold, max(c.threshold, q)
        self.log(f"threshold calibrated on {len(keep)} answers to {len(prompts)} benign prompts: "
                 f"q{c.threshold_quantile:g} of their costs = {q:.3f} ({(cost > old).mean():.0%} above the "
                 f"configured d = {old:g}); d = {c.threshold:.3f}")
        return c.threshold

    def _tensorboard(self, row: dict[str, float]) -> None:
        if "tensorboard" not in self.cfg.report_to:
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise TrainingError("report_to includes tensorboard but the tensorboard package is missing: "
                                    "pip install tensorboard") from err
            self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))
        for k, v in row.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self._tb.add_scalar(k, v, row["step"])

    # ------------------------------------------------------------------ persistence
    def _ckpt_root(self) -> Path:
        return self.out_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Adapter/model, optimizer, multipliers, RNG states and data cursor, written atomically."""
        root = self._ckpt_root()
        root.mkdir(parents=True, exist_ok=True)
        final = root / f"step-{self.step:06d}"
        if final.exists():
            return final
        tmp = root / f".tmp-step-{self.step:06d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model = self.accelerator.unwrap_model(self.policy)
        trainable = {k: v.detach().cpu() for k, v in model.named_parameters() if v.requires_grad}
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in trainable.items()}, str(tmp / "trainable.safetensors"))
        state = {
            "step": self.step, "bad_steps": self.bad_steps, "violations": self.violations,
            "optimizer": self.optimizer.state_dict(),
            "handler": self.handler.state_dict(), "refusal_budget": self.refusal_budget.state_dict(),
            "prompts": self.prompts.state_dict(),
            "value_heads": self.value_heads.state_dict() if self.value_heads is not None else None,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": np.random.get_state()[1].tolist()},
        }
        torch.save(state, tmp / "trainer_state.pt")
        os.replace(tmp, final)  # a checkpoint directory either exists whole or not at all
        atomic_write_text(root / "latest", final.name)
        for old in sorted(p for p in root.glob("step-*") if p != final)[: -self.cfg.keep_checkpoints + 1 or None]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self) -> bool:
        root = self._ckpt_root()
        if not (root / "latest").exists():
            self.log(f"no checkpoint under {root}; starting from scratch")
            return False
        ckpt = root / (root / "latest").read_text().strip()
        from safetensors.torch import load_file

        model = self.accelerator.unwrap_model(self.policy)
        saved = load_file(str(ckpt / "trainable.safetensors"))
        named = dict(model.named_parameters())
        with torch.no_grad():
            for k, v in saved.items():
                named[k].copy_(v)
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)  # our own file, written above
        self.optimizer.load_state_dict(state["optimizer"])
        self.handler.load_state_dict(state["handler"])
        if "refusal_budget" in state:  # checkpoints before session 19 have none
            self.refusal_budget.load_state_dict(state["refusal_budget"])
        self.prompts.load_state_dict(state["prompts"])
        if self.value_heads is not None and state["value_heads"] is not None:
            self.value_heads.load_state_dict(state["value_heads"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        self.step, self.bad_steps = int(state["step"]), int(state["bad_steps"])
        self.violations = list(state.get("violations", []))  # absent in checkpoints older than extend_steps
        self.log(f"resumed from {ckpt} (step {self.step})")
        return True

    def save_policy(self, path: Path) -> Path:
        """A plain HF checkpoint (adapter merged) that every command loads, plus the adapter alone."""
        model = self.accelerator.unwrap_model(self.policy)
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if self.cfg.lora.enabled:
            model.save_pretrained(str(path.with_name("adapter")))
            merged = copy.deepcopy(model).merge_and_unload()
        else:
            merged = model
        merged.save_pretrained(str(tmp), safe_serialization=True)
        self.tokenizer.save_pretrained(str(tmp))
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
        return path


def _whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    mean = L.masked_mean(x, mask)
    var = L.masked_mean((x - mean) ** 2, mask)
    return (x - mean) / (var.sqrt() + eps) * mask


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint so the log reads as one run."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(r + "\n" for r in rows))


def _load_scorer(ref: str, kind: str) -> Scorer:
    from safealign import scoring

    if ref == "default":
        return scoring.default_scorer(kind)
    return scoring.load_scorer(ref)


def load_prompt_pools(cfg: AlignConfig) -> tuple[list[list[Message]], list[list[Message]]]:
    """Harmful and benign rollout prompts from the configured datasets."""
    return (load_prompt_pool(cfg, cfg.data.harmful, refused_only=cfg.data.harmful_refused_only),
            load_prompt_pool(cfg, cfg.data.benign))


def load_prompt_pool(cfg: AlignConfig, names: Sequence[str], refused_only: bool = False) -> list[list[Message]]:
    """Prompts of the named datasets (training split), de-duplicated, length-capped; with ``refused_only``, a
    prompt whose record carries a reference answer (``meta['response']``) is kept only if that answer refuses."""
    from safealign.data.registry import load_dataset
    from safealign.scoring.data import looks_like_refusal

    split = None if cfg.data.split == "all" else cfg.data.split
    seen: set[str] = set()
    out = []
    for name in names:
        for rec in load_dataset(name, split=split):
            msgs = rec.messages if hasattr(rec, "messages") else None
            if msgs is None:
                continue
            key = msgs[-1]["content"].strip().lower()
            # the whole conversation: an HH-RLHF dialogue's earlier turns are part of every rollout's prompt
            if key in seen or conversation_chars(msgs) > cfg.data.max_prompt_chars:
                continue
            reference = (getattr(rec, "meta", None) or {}).get("response")
            if refused_only and isinstance(reference, str) and not looks_like_refusal(reference):
                continue
            seen.add(key)
            out.append(msgs)
    return out
