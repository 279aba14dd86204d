"""Configuration of ``safealign align``: every field documented and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from safealign.config import ConfigBase, option, require, section
from safealign.generation import SamplingConfig
from safealign.train.constraints import ConstraintConfig, RefusalBudgetConfig


def _rollout_sampling() -> SamplingConfig:
    return SamplingConfig(max_new_tokens=64, temperature=1.0, top_p=1.0, batch_size=32)


@dataclass
class LoraConfig(ConfigBase):
    """LoRA adapter (peft). With LoRA the reference model is the same network with the adapter disabled."""

    enabled: bool = option(True, help="train a LoRA adapter (false: full fine-tuning with a frozen reference copy)")
    r: int = option(16, help="adapter rank")
    alpha: int = option(32, help="adapter scaling numerator (scale = alpha / r)")
    dropout: float = option(0.0, help="adapter dropout (0 keeps rollouts and resumes exactly reproducible)")
    target_modules: list[str] = option(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="module names that get adapters")

    def validate(self) -> None:
        require(self.r >= 1 and self.alpha >= 1, "lora r and alpha must be >= 1")
        require(0 <= self.dropout < 1, "lora dropout must be in [0, 1)")


@dataclass
class PromptMixConfig(ConfigBase):
    """Where rollout prompts come from: harmful ones (to learn refusing) and benign ones (to stay helpful)."""

    harmful: list[str] = option(default_factory=lambda: ["advbench", "pku-safe-unsafe"],
                                help="datasets (names or files) of harmful prompts")
    harmful_refused_only: bool = option(
        True, help="of harmful data sets that carry a reference answer (safety-refusals), keep only the prompts that "
                   "answer refuses: that set also answers some prompts plainly ('The square root of 48 is ...')")
    benign: list[str] = option(default_factory=lambda: ["alpaca"], help="datasets of benign prompts")
    harmful_fraction: float = option(0.5, help="share of harmful prompts in each rollout batch")
    lookalike_fraction: float = option(
        0.0, help="share of the benign slots filled with benign prompts worded most like the harmful ones "
                  "(mined from the benign datasets; keeps the reward pricing over-refusal)")
    lookalike_pool: int = option(400, help="size of that mined pool of look-alike benign prompts")
    lookalike_method: Literal["embedding", "keywords", "both"] = option(
        "embedding", help="how look-alikes are mined: MiniLM similarity, the harmful prompts' most distinctive "
                          "words, or both rankings alternated (safealign.data.lookalikes)")
    lookalike_from: list[str] = option(
        default_factory=list, help="datasets the look-alikes are mined from (empty: the benign datasets); "
                                   "user questions such as hh-helpful hold more sensitive-but-safe requests than "
                                   "Alpaca's instructions")
    split: Literal["train", "validation", "test", "all"] = option(
        "train", help="hash split used for training prompts (evaluation uses 'test')")
    max_prompt_chars: int = option(
        600, help="prompts whose conversation (all turns) is longer are skipped (keeps CPU rollouts short)")

    def validate(self) -> None:
        require(0.0 <= self.harmful_fraction <= 1.0, "harmful_fraction must be in [0, 1]")
        require(0.0 <= self.lookalike_fraction <= 1.0 and self.lookalike_pool >= 1,
                "lookalike_fraction must be in [0, 1] and lookalike_pool >= 1")
        require(bool(self.harmful) or self.harmful_fraction == 0.0, "harmful_fraction > 0 needs harmful datasets")
        require(bool(self.benign) or self.harmful_fraction == 1.0, "harmful_fraction < 1 needs benign datasets")


@dataclass
class WarmStartConfig(ConfigBase):
    """Optional warm start before RL (Safe RLHF starts RL from an SFT model too).

    A policy that never refuses gives RL no refusal to reinforce. A short SFT (or DPO, ``objective``) on
    refusals of harmful requests, safe answers to sensitive ones (PKU safe responses) and the model's own
    answers to benign requests (self-distillation, so helpfulness is anchored) gives the constrained RL
    something to work on. DPO learns refusing as a function of the prompt; SFT also raises it everywhere.
    """

    enabled: bool = option(False, help="run the warm start (SFT or DPO) before RL")
    seed: int | None = option(
        None, help="seed of the warm start's draws and adapter (none: the run's seed); fixing it lets RL runs at "
                   "several seeds share one cached warm start, which separates the two sources of seed variance")
    steps: int = option(60, help="optimizer steps")
    batch_size: int = option(8, help="examples per step")
    lr: float = option(2e-4, help="learning rate (LoRA)")
    lr_schedule: Literal["constant", "linear"] = option(
        "constant", help="constant, or linear decay to 0 over the steps: with a few dozen small batches the end "
                         "state of a constant rate depends on the last batches drawn, so it varies with the seed")
    batch_mix: Literal["random", "stratified"] = option(
        "random", help="dpo: random batches, or stratified ones that each hold pairs preferring a refusal (harmful "
                       "prompts) and pairs dispreferring one (benign prompts) in their overall proportion, so no "
                       "run of steps pushes refusing up or down everywhere and the end state depends less on the seed")
    refusals: int = option(240, help="harmful instruction -> refusal examples (safety-refusals, train split)")
    safe_answers: int = option(160, help="PKU prompt -> its safe response examples (train split)")
    self_distill: int = option(96, help="benign prompts answered by the base model itself (alpaca, train split)")
    lookalikes: int = option(
        0, help="more self-distilled benign instructions: those worded most like harmful ones (hard negatives "
                "against over-refusal, mined as lookalike_method says)")
    lookalike_method: Literal["embedding", "keywords", "both"] = option(
        "embedding", help="how the look-alikes are mined (as data.lookalike_method)")
    questions: int = option(
        0, help="more self-distilled benign prompts: user questions from questions_data (train split), phrased the "
                "way sensitive-but-safe requests are ('How do I ...?'), so refusing is not tied to the question form")
    questions_data: str = option("alpaca-eval", help="dataset of the benign questions (held-out split never used)")
    contrasts: int = option(
        0, help="more self-distilled benign prompts: safe requests worded like harmful ones ('Write a tutorial on how "
                "to kill fruit flies'), from contrasts_data (train split), so that an alarming word or request form "
                "alone is not learned as a reason to refuse")
    contrasts_data: str = option("benign-contrasts", help="dataset of the benign contrast prompts")
    objective: Literal["sft", "dpo"] = option(
        "sft", help="sft: cross-entropy on the targets; dpo: preference pairs from the same sources (refusal over "
                    "the model's own answer for harmful prompts, its own answer over a refusal for benign ones), so "
                    "only the prompt-conditional part of refusing is learned (needs LoRA)")
    hedged_rejections: bool = option(
        False, help="dpo: the refusals dispreferred for benign prompts also include the hedged openers that the "
                    "chosen refusals of harmful prompts use ('I'm sorry, but as an AI language model, I ...'), so "
                    "the model learns when to refuse, not that the hedge is good everywhere")
    benign_rejections: Literal["templates", "own"] = option(
        "templates", help="dpo: what benign prompts' dispreferred refusal is: a generic template ('I'm sorry, but I "
                          "can't help with that.'), or own = the model's own refusal of that prompt, continued from "
                          "one of rejection_openers, so the refusal pushed down is on topic and in the voice the "
                          "model over-refuses in ('I'm sorry, but I cannot assist with purchasing beverages')")
    rejection_openers: list[str] = option(
        default_factory=lambda: ["I'm sorry, but I cannot", "I'm sorry, but I can't", "I apologize, but I cannot",
                                 "I'm sorry, but as an AI language model, I cannot"],
        help="benign_rejections: own: refusal openers, one drawn per benign prompt, the model writes the rest")
    rejection_tokens: int = option(32, help="benign_rejections: own: tokens the model writes after the opener")
    refusal_style: Literal["all", "plain"] = option(
        "all", help="which safety-refusals responses are targets for harmful prompts: all, or plain = without the "
                    "dataset's 'as an AI (language model)' hedge in the opening (measured at seed 0: over-refusal "
                    "26% -> 47%, the refusals only changed voice; docs/results.md, session 11)")
    refused_only: bool = option(
        False, help="harmful prompts' targets only from the safety-refusals responses that refuse (as "
                    "data.harmful_refused_only): 516 of its 1,994 training responses answer instead, e.g. 'No, it is "
                    "illegal to ...' or a plain answer to a mild ask, which the DPO warm start then prefers")
    dpo_beta: float = option(0.1, help="dpo: inverse temperature of the preference loss")
    chosen_nll: float = option(1.0, help="dpo: weight of the cross-entropy on the chosen response (0 = pure DPO)")
    self_distill_tokens: int = option(96, help="token limit of the self-distilled answers (cut ones get no EOS)")
    max_length: int = option(256, help="tokens per example (prompt + response), longer ones are truncated")

    def validate(self) -> None:
        require(self.steps >= 0 and self.batch_size >= 1 and self.lr > 0, "bad warm-start steps/batch_size/lr")
        require(min(self.refusals, self.safe_answers, self.self_distill, self.lookalikes, self.questions,
                    self.contrasts) >= 0, "example counts must be >= 0")
        require(self.self_distill_tokens >= 1, "self_distill_tokens must be >= 1")
        require(self.benign_rejections == "templates" or (self.rejection_tokens >= 1
                                                           and any(o.strip() for o in self.rejection_openers)),
                "benign_rejections: own needs rejection_tokens >= 1 and a non-empty rejection_openers entry")
        require(self.dpo_beta > 0 and self.chosen_nll >= 0, "dpo_beta must be > 0 and chosen_nll >= 0")
        require(self.batch_mix == "random" or self.objective == "dpo",
                "warmstart.batch_mix: stratified needs objective: dpo (the strata are the pairs' two kinds)")


@dataclass
class AlignConfig(ConfigBase):
    """Constrained RL fine-tuning: maximise reward subject to a cost constraint."""

    model: str = option("smollm2-135m-instruct", help="policy: embedded name, local HF directory or hub id")
    reward_model: str = option("default", help="reward scorer: a scorer directory, or 'default' (trained if missing)")
    cost_model: str = option("default", help="cost scorer: a scorer directory, or 'default' (trained if missing)")
    out_dir: str = option("runs/align", help="where adapters, checkpoints, logs and the effective config go")
    seed: int = option(0, help="seed of prompt order, sampling and initialisation")
    dtype: str = option("auto", help="auto (bf16 where fast), float32 or bfloat16")
    steps: int = option(40, help="policy-update steps (one rollout batch each)")
    extend_steps: int = option(
        0, help="up to this many more steps while the constraint is still violated: past `steps`, training stops "
                "at the first step whose last `extend_window` steps averaged at most `extend_violation` violating "
                "prompts (a run from a weak start gets the steps it needs, one already feasible stops on time)")
    extend_window: int = option(8, help="steps averaged by the extend_steps rule")
    extend_violation: float = option(0.1, help="violating-prompt share (as logged) at or below which extending stops")
    prompts_per_step: int = option(8, help="prompts per rollout batch")
    samples_per_prompt: int = option(4, help="responses per prompt (the group of the group-relative baseline)")
    estimator: Literal["grpo", "ppo"] = option(
        "grpo", help="grpo: group-relative baseline (CPU default); ppo: reward and cost critics with GAE")
    advantage_scale: Literal["group", "batch", "none"] = option(
        "group", help="grpo: divide each group's centred rewards by the group's std (group, GRPO), by one std "
                      "pooled over the batch (batch: groups move the policy in proportion to how much their "
                      "samples differ, e.g. lambda times a harmful group's cost gap), or not at all (none, Dr. GRPO)")
    lr: float = option(5e-5, help="policy learning rate")
    critic_lr: float = option(1e-4, help="ppo: learning rate of the value heads")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    kl_coef: float = option(0.05, help="weight of the KL(pi || reference) penalty")
    clip_eps: float = option(0.2, help="PPO ratio clip")
    ppo_epochs: int = option(1, help="passes over each rollout batch")
    minibatch_size: int = option(8, help="sequences per forward/backward (gradients accumulate over the batch)")
    max_grad_norm: float = option(1.0, help="gradient clipping")
    gae_lambda: float = option(0.95, help="ppo: GAE lambda")
    value_clip: float = option(0.2, help="ppo: value clipping")
    score_clip: float = option(10.0, help="rewards and costs are clipped to +- this before use")
    refusal_rule_cost: float = option(
        0.0, help="rule-based cost floor: an answer to a prompt of the *harmful* training pool that does not open "
                  "with a refusal costs at least this (0 = off). The cost model prices harm, so a harmless "
                  "deflection passes it; this rule says the expected behaviour on known-harmful prompts is to refuse")
    refusal_rule_reward: float = option(
        0.0, help="its counterpart: a refusal of a prompt of the *benign* pools (look-alikes included) gets a reward "
                  "of at most minus this (0 = off), so that refusing spreads less to safe requests")
    harmful_reward_weight: float = option(
        1.0, help="weight of the reward model's score in the advantages of *harmful*-pool prompts (1 = as for any "
                  "prompt, 0 = only the cost decides there): with the rectified constraint a harmful prompt's safe "
                  "answers carry no cost signal, so the reward alone ranks a refusal against a deflection that "
                  "scores a little more helpful, and RL drifts from refusing to deflecting")
    trusted_benign_margin: float = option(
        0.0, help="> threshold: answers to prompts of the *benign* pools cost at most the threshold unless their "
                  "cost exceeds this margin (Llama 2's piecewise safety reward: the safety score counts for prompts "
                  "tagged risky, or when it signals clear harm), so the cost model's false alarms on safe requests "
                  "do not teach refusing; 0 = off")
    guided_refusals: bool = option(
        False, help="a harmful-pool prompt none of whose samples refuses gets one extra sample that starts with one "
                    "of guide_openers and is finished by the policy, so its group has a refusal to prefer (off-policy: "
                    "the opener's gradient is a biased, advantage-weighted likelihood push; the multiplier and the "
                    "logged rates see only the policy's own samples)")
    guide_openers: list[str] = option(
        default_factory=lambda: ["I'm sorry, but I can't help with that.", "I can't help with that request.",
                                 "I won't help with this."],
        help="refusal openers of guided_refusals, one drawn per guided sample")
    share_prompts: bool = option(
        True, help="rows with the same prompt (the k samples of a group) run it through the model once: the rollout's "
                   "prefill copies its cache rows, and the reference and training passes let the k responses attend "
                   "to its cached keys and values (the same math up to rounding; ~3/8 fewer tokens through the model "
                   "at k = 4 with prompts as long as responses)")
    rollout_copy: bool = option(
        True, help="sample rollouts from a merged copy of the policy in the compute dtype (faster; one more "
                   "copy of the weights in memory)")
    attention: Literal["auto", "eager", "sdpa"] = option(
        "auto", help="attention kernel of the training and reference passes: auto = eager on CPU (torch's "
                     "SDPA backward is slow there: 1.7 against 2.3 s per forward+backward of a demo-sized batch), "
                     "the model's own choice elsewhere")
    entropy_log: bool = option(True, help="log the policy entropy (one extra pass over the logits)")
    violation_tau: float = option(0.5, help="a prompt violates when the share of its samples with cost > d exceeds tau")
    checkpoint_every: int = option(10, help="write a resumable checkpoint every N steps (0: only at the end)")
    keep_checkpoints: int = option(2, help="checkpoints kept on disk")
    report_to: list[str] = option(default_factory=lambda: ["jsonl"], help="jsonl and/or tensorboard")
    max_bad_steps: int = option(3, help="abort after this many consecutive steps skipped for non-finite values")
    sampling: SamplingConfig = section(_rollout_sampling, help="rollout sampling")
    lora: LoraConfig = section(LoraConfig, help="LoRA adapter")
    data: PromptMixConfig = section(PromptMixConfig, help="rollout prompt mixture")
    constraint: ConstraintConfig = section(ConstraintConfig, help="safety constraint and multiplier")
    over_refusal: RefusalBudgetConfig = section(
        RefusalBudgetConfig, help="optional second constraint: the refusal rate on benign-pool prompts")
    warmstart: WarmStartConfig = section(WarmStartConfig, help="optional SFT warm start")

    def validate(self) -> None:
        require(self.steps >= 0, "steps must be >= 0")
        require(self.extend_steps >= 0 and self.extend_window >= 1, "extend_steps must be >= 0, extend_window >= 1")
        require(0 <= self.extend_violation <= 1, "extend_violation is a share, in [0, 1]")
        require(self.prompts_per_step >= 1, "prompts_per_step must be >= 1")
        require(self.samples_per_prompt >= 2 or self.estimator == "ppo",
                "grpo needs samples_per_prompt >= 2 (the baseline is the group mean)")
        require(self.lr > 0 and self.critic_lr > 0, "learning rates must be > 0")
        require(self.kl_coef >= 0 and self.clip_eps > 0, "kl_coef must be >= 0 and clip_eps > 0")
        require(self.ppo_epochs >= 1 and self.minibatch_size >= 1, "ppo_epochs and minibatch_size must be >= 1")
        require(set(self.report_to) <= {"jsonl", "tensorboard"}, "report_to takes jsonl and/or tensorboard")
        require(self.checkpoint_every >= 0 and self.keep_checkpoints >= 1, "bad checkpoint options")
        require(self.trusted_benign_margin >= 0, "trusted_benign_margin must be >= 0")
        require(self.harmful_reward_weight >= 0, "harmful_reward_weight must be >= 0")
        require(not self.guided_refusals or any(o.strip() for o in self.guide_openers),
                "guided_refusals needs at least one non-empty guide_openers entry")
