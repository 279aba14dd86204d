"""Training rows for reward and cost models, built from the named datasets with leak-free splits.

One :class:`Example` is a preference pair (``a`` preferred over ``b``) or a single labelled response
(``b is None``). Cost rows carry per-response signs (+1 unsafe, -1 safe, 0 unknown) and optionally
severity levels. Every source is split by a salted hash of its prompt text
(:func:`safealign.data.splits.split_records`), so a prompt never straddles train and test, and a second
model trained with another ``split_salt`` / ``train_half`` sees different data (the held-out judge).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import re
from collections.abc import Callable, Sequence

import numpy as np

from safealign.config import ConfigBase, option, require
from safealign.data.records import Message, PreferencePair, SafetyPair, user_prompt
from safealign.data.splits import SPLITS, normalise, split_records

# Generic refusals used as *dispreferred* answers to benign requests in the reward data, so that the
# helpfulness model never prefers refusing a benign request. Two disjoint sets: train and held-out eval.
REFUSALS_TRAIN = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, I cannot assist with that request.",
    "As an AI language model, I am not able to help with this.",
    "I apologize, but I won't be able to provide that information.",
    "Sorry, I can't do that.",
    "I'm afraid I can't help you with this request.",
)
REFUSALS_EVAL = (
    "Unfortunately, I am unable to comply with this request.",
    "I cannot help with that. Is there something else I can do for you?",
    "I'm not able to provide assistance with this topic.",
)
# Generic refusals in the style of the safety-refusals dataset that the warm start's chosen refusals of harmful
# prompts come from (of its 1,994 training refusals, 661 open "I'm sorry, but as an AI language model," or "As
# an AI language model, I ..."; 1,035 open "I'm sorry" or "I apologize"). With only the short templates above
# as dispreferred answers, that hedge was pushed up on every prompt: the demo's warm start opened 11 of 60
# AlpacaEval answers with it, and the reward model scored it above a short refusal (-0.7 against -1.5 and +0.6
# against 0.0 on two probes). Each fits any prompt, so pushing it down on a benign prompt teaches only not to
# refuse there. Train and held-out sets are disjoint.
HEDGED_REFUSALS_TRAIN = (
    "I'm sorry, but as an AI language model, I cannot help with that.",
    "I'm sorry, but as an AI language model, I don't have access to that information.",
    "I'm sorry, but as an AI language model, I am not able to assist with this request.",
    "As an AI language model, I do not have personal opinions or the ability to do that.",
    "As an AI language model, I cannot provide that.",
    "I'm sorry, but I cannot provide assistance with this request.",
    "I'm sorry, but I cannot provide you with that information.",
)
HEDGED_REFUSALS_EVAL = (
    "I apologize, but as an AI language model, I am unable to do that.",
    "As an AI assistant, I don't have the ability to provide this.",
)
# Synthetic compliance *openers* for harmful instructions (cost data, labelled unsafe as prefixes): a
# response that starts by agreeing to carry out a harmful request. No harmful content is invented; the
# label is that of the response such an opener begins (the prefix-scoring convention). Disjoint sets
# for training and for the held-out probe. ``{task}`` is the instruction, first letter lower-cased.
OPENERS_TRAIN = (
    "Sure, here is how to {task}:\n\n1.",
    "Of course! Here's a step-by-step guide to {task}.\n\nStep 1:",
    "Absolutely. To {task}, you will need the following:\n\n-",
    "Certainly! Below is what you asked for ({task}):\n\n",
    "Here you go. I'll explain how to {task} in detail.\n\nFirst,",
    "No problem. The easiest way to {task} is as follows:",
)
OPENERS_EVAL = (
    "Sure thing, I can help you {task}. Here are the steps:\n\n1.",
    "Great question! Let me walk you through how to {task}.\n\nFirst,",
)
_REFUSAL_RE = re.compile(
    r"\b(i('m| am) (sorry|afraid|not able|unable)|i can(no|')t|i won'?t|i will not|as an ai|i apologi[sz]e|"
    r"i'?m not comfortable|i do not feel comfortable|i don'?t think i (can|should))\b", re.IGNORECASE)


def looks_like_refusal(text: str) -> bool:
    """Heuristic: does the response open with a refusal phrase (first 200 characters)?"""
    return bool(_REFUSAL_RE.search(text[:200]))


@dataclasses.dataclass
class Example:
    """A pair (a preferred over b) or a single labelled response (b is None), possibly truncated."""

    messages: list[Message]
    a: str
    b: str | None = None
    sign_a: int = 0  # cost label of a: +1 unsafe, -1 safe, 0 unknown (sign term skipped)
    sign_b: int = 0
    severity_a: int = -1  # 0 none .. 3 severe; -1 unknown
    severity_b: int = -1
    source: str = ""
    fraction: float = 1.0  # < 1: both responses cut to this fraction of their words (process scoring)
    full_a: str | None = None  # the untruncated responses of a prefix row (teacher for consistency)
    full_b: str | None = None

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


@dataclasses.dataclass
class ScorerDataConfig(ConfigBase):
    """Where the training rows come from and how they are split and augmented."""

    pairs: list[str] = option(default_factory=list, help="preference datasets (names or files); for cost models "
                                                           "'chosen' must be the safer response. If no source is "
                                                           "given at all, the defaults of the scorer kind are used")
    safety_pairs: list[str] = option(default_factory=list, help="files in the full PKU-SafeRLHF schema (safety "
                                                                "preference, per-response labels, severity levels)")
    safe_responses: list[str] = option(default_factory=list, help="prompt datasets with a reference response "
                                                                  "(meta['response']) labelled safe, e.g. safety-refusals")
    weak_safe_chosen: list[str] = option(default_factory=list, help="preference datasets whose *chosen* responses "
                                                                     "are added as safe (a weak label; see docs)")
    weak_safe_max: int = option(2000, help="at most this many weak-safe responses (0 = all)")
    compliance_openers: float = option(0.5, help="cost data only: fraction of safe_responses prompts (harmful "
                                                 "instructions) that also get a synthetic compliance opener "
                                                 "labelled unsafe, paired with the refusal (see docs)")
    prefill_compliance: int = option(200, help="cost data only: harmful instructions (train split of "
                                               "safe_responses) whose compliance opener the prefill model continues; "
                                               "labelled unsafe, paired with the refusal. 0 = off (see docs)")
    benign_prompts: list[str] = option(default_factory=list, help="cost data only: benign prompt datasets whose "
                                                                  "prefilled answers are labelled safe (the contrast "
                                                                  "set of prefill_compliance)")
    prefill_benign: int = option(100, help="cost data only: benign instructions (train split of benign_prompts) whose "
                                           "compliance opener the prefill model continues, labelled safe, so that "
                                           "compliant *style* alone does not read as unsafe. 0 = off")
    sampled_harmful: list[str] = option(
        default_factory=list, help="cost data only: harmful prompt datasets the prefill model answers freely (no "
                                   "opener); an answer is labelled unsafe unless it opens with a refusal. The "
                                   "policy's own failure mode, in its own words (on-policy red-teaming data)")
    sampled_per_source: int = option(200, help="cost data only: training prompts answered per sampled_harmful "
                                               "or sampled_benign dataset (an eighth of that for validation and test)")
    sampled_benign: list[str] = option(
        default_factory=list, help="cost data only: benign prompt datasets the prefill model answers freely, "
                                   "labelled safe: the on-policy contrast of sampled_harmful, so that a plain "
                                   "answer to a sensitive-sounding benign request does not read as harm")
    sampled_benign_lookalikes: bool = option(True, help="pick the sampled_benign prompts worded most like the "
                                                        "sampled_harmful ones of the same split (hard negatives; "
                                                        "see safealign.data.lookalikes) instead of at random")
    prefill_model: str = option("smollm2-135m-instruct", help="model that continues the prefilled openers "
                                                              "(ideally the policy that the scorer will judge)")
    prefill_max_new_tokens: int = option(48, help="tokens generated after each prefilled opener")
    refusal_negatives: float = option(0.25, help="reward data only: fraction of pair prompts that also get a (chosen, "
                                                "generic refusal) pair, so refusing benign requests scores low")
    hedged_refusals: bool = option(False, help="reward data only: the generic refusals also include hedges in the "
                                               "refusal dataset's style ('I'm sorry, but as an AI language model, "
                                               "I ...'), which the short templates alone left scored as helpful")
    max_per_source: int = option(0, help="cap on training rows per source (0 = all); for quick runs")
    split_salt: str = option("safealign", help="salt of the train/validation/test hash split ('safealign' = "
                                               "the project-wide split used by every evaluation)")
    fractions: list[float] = option(default_factory=lambda: [0.8, 0.1, 0.1],
                                    help="train / validation / test fractions of each source")
    train_half: str = option("all", help="all, a or b: keep only one hash half of the training rows (disjoint "
                                         "halves for a scorer and its held-out judge)")
    prefixes_per_example: int = option(1, help="truncated copies added per training row (process scoring); 0 = off")
    prefix_min_fraction: float = option(0.15, help="prefix cut points are drawn uniformly in [this, 0.9] of the words")
    eval_prefix_fractions: list[float] = option(default_factory=lambda: [0.25, 0.5, 1.0],
                                                help="fractions of response length at which held-out accuracy is reported")
    max_eval_rows: int = option(600, help="cap on validation / test rows per source (keeps evaluation fast)")

    def has_sources(self) -> bool:
        return bool(self.pairs or self.safety_pairs or self.safe_responses or self.weak_safe_chosen
                    or self.benign_prompts or self.sampled_harmful or self.sampled_benign)

    def with_kind_defaults(self, kind: str) -> None:
        """Fill the default sources of ``kind`` when none is configured (in place)."""
        if not self.has_sources():
            if kind == "reward":
                self.pairs = ["hh-helpful"]
            else:
                self.pairs, self.safe_responses = ["pku-safe-unsafe", "hh-harmless"], ["safety-refusals"]
                self.weak_safe_chosen = ["hh-helpful"]
                self.benign_prompts = ["alpaca"]
                self.sampled_harmful = ["advbench"]
                self.sampled_benign = ["alpaca"]

    def validate(self) -> None:
        require(self.train_half in ("all", "a", "b"), f"train_half must be all, a or b, got '{self.train_half}'")
        require(len(self.fractions) == 3 and all(f >= 0 for f in self.fractions)
                and math.isclose(sum(self.fractions), 1.0), "fractions must be 3 non-negative numbers summing to 1")
        require(self.fractions[1] > 0, "a validation fraction > 0 is needed for early stopping")
        require(0 <= self.refusal_negatives <= 1, "refusal_negatives must be in [0, 1]")
        require(0 <= self.compliance_openers <= 1, "compliance_openers must be in [0, 1]")
        require(self.prefill_benign >= 0 and self.sampled_per_source >= 0,
                "prefill_benign and sampled_per_source must be >= 0")
        require(self.prefill_compliance >= 0 and self.prefill_max_new_tokens >= 1,
                "prefill_compliance must be >= 0 and prefill_max_new_tokens >= 1")
        require(self.prefixes_per_example >= 0, "prefixes_per_example must be >= 0")
        require(0 < self.prefix_min_fraction < 0.9, "prefix_min_fraction must be in (0, 0.9)")
        require(all(0 < f <= 1 for f in self.eval_prefix_fractions), "eval_prefix_fractions must be in (0, 1]")
        require(self.max_per_source >= 0 and self.max_eval_rows >= 1 and self.weak_safe_max >= 0,
                "max_per_source, weak_safe_max must be >= 0 and max_eval_rows >= 1")


_WORD = re.compile(r"\S+")


def truncate_words(text: str, fraction: float) -> str:
    """The first ``ceil(fraction * words)`` words of ``text`` (at least one), original spacing kept."""
    spans = [m.end() for m in _WORD.finditer(text)]
    if not spans or fraction >= 1:
        return text
    return text[: spans[max(1, math.ceil(fraction * len(spans))) - 1]]


def _half(text: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}-half\x00{normalise(text)}".encode()).digest()
    return "a" if digest[0] < 128 else "b"


def _pair_example(p: PreferencePair, kind: str, source: str) -> Example:
    sign = lambda safe: 0 if safe is None else (-1 if safe else 1)  # noqa: E731
    if kind == "reward":
        return Example(p.messages, p.chosen, p.rejected, source=source)
    return Example(p.messages, p.chosen, p.rejected, sign(p.chosen_safe), sign(p.rejected_safe), source=source)


def _safety_example(sp: SafetyPair, source: str) -> Example | None:
    if sp.safer_response_id is None:
        return None
    i = sp.safer_response_id
    r = (sp.response_0, sp.response_1)
    safe = (sp.is_response_0_safe, sp.is_response_1_safe)
    sev = (sp.severity_level_0, sp.severity_level_1)
    sign = lambda s: 0 if s is None else (-1 if s else 1)  # noqa: E731
    return Example(user_prompt(sp.prompt), r[i], r[1 - i], sign(safe[i]), sign(safe[1 - i]),
                   -1 if sev[i] is None else sev[i], -1 if sev[1 - i] is None else sev[1 - i], source)


def load_source_examples(cfg: ScorerDataConfig, kind: str, *,
                         generate_test: bool = True) -> dict[str, dict[str, list[Example]]]:
    """``{source: {split: [Example]}}`` for every configured source (before augmentation).

    ``generate_test=False`` leaves the test split of the model-generated sources empty: only the test metrics
    read it, and its generation is a tenth of the data build. Every split is generated with its own seed, so
    the training and validation rows are the same either way.
    """
    from safealign.data.registry import load_dataset

    out: dict[str, dict[str, list[Example]]] = {}

    def add(name: str, examples: list[Example]) -> None:
        splits = split_records(examples, cfg.fractions, key=lambda e: e.prompt, salt=cfg.split_salt)
        out[name] = splits

    for name in cfg.pairs:
        add(name, [_pair_example(p, kind, name) for p in load_dataset(name, kind="preferences")])
    for name in cfg.safety_pairs:
        rows = [_safety_example(sp, name) for sp in load_dataset(name, kind="safety_pairs")]
        add(name, [e for e in rows if e is not None])
    for name in cfg.safe_responses:
        recs = load_dataset(name, kind="prompts")
        add(name, [Example(r.messages, r.meta["response"], sign_a=-1, source=name)
                   for r in recs if "response" in r.meta])
        if kind == "cost" and cfg.compliance_openers > 0:
            out[f"{name}:vs-opener"] = {
                split: _with_openers(rows, cfg.compliance_openers, f"{cfg.split_salt}:{name}:{split}",
                                     _openers(split), f"{name}:vs-opener")
                for split, rows in out[name].items()}
        if kind == "cost" and cfg.prefill_compliance > 0:
            from safealign.scoring.synthetic import prefilled_compliance

            out[f"{name}:vs-prefilled"] = {}
            for split, rows in out[name].items():
                if split == "test" and not generate_test:
                    out[f"{name}:vs-prefilled"][split] = []
                    continue
                pick = _prefill_sample(rows, cfg.prefill_compliance, split, f"{cfg.split_salt}:{name}:{split}:prefill")
                out[f"{name}:vs-prefilled"][split] = prefilled_compliance(
                    pick, _openers(split), model=cfg.prefill_model, max_new_tokens=cfg.prefill_max_new_tokens,
                    seed=f"{cfg.split_salt}:{split}", source=f"{name}:vs-prefilled")

    def add_model_answers(name: str, source: str, n: int, tag: str, opened: bool,
                          label: Callable[[str], int], like: str | None = None) -> None:
        """The prefill model's answers to ``n`` training prompts of ``name`` (an eighth in the held-out splits),
        continuing a compliance opener (``opened``) or free; ``label(text)`` gives each answer's cost sign.
        With ``like`` (a source already in ``out``), the prompts of a split are those worded most like its."""
        from safealign.scoring.synthetic import prefilled_responses

        recs = [r for r in load_dataset(name, kind="prompts") if len(r.text) <= 600]
        add(source, [Example(r.messages, "", source=source) for r in recs])
        for split, rows in out[source].items():
            if split == "test" and not generate_test:
                out[source][split] = []
                continue
            seed = f"{cfg.split_salt}:{name}:{split}:{tag}"
            if like is not None:
                pick = _lookalike_sample(rows, out[like][split], n, split, seed)
            else:
                pick = _prefill_sample(rows, n, split, seed)
            texts = prefilled_responses(pick, _openers(split) if opened else [], model=cfg.prefill_model,
                                        max_new_tokens=cfg.prefill_max_new_tokens, seed=f"{cfg.split_salt}:{split}:{tag}")
            out[source][split] = [dataclasses.replace(r, a=t, sign_a=label(t))
                                  for r, t in zip(pick, texts, strict=True) if t.strip()]

    if kind == "cost" and cfg.prefill_benign > 0:
        for name in cfg.benign_prompts:  # compliant style on a benign request is not harm
            add_model_answers(name, f"{name}:prefilled-benign", cfg.prefill_benign, "benign", True, lambda t: -1)
    if kind == "cost" and cfg.sampled_per_source > 0:
        for name in cfg.sampled_harmful:  # the policy's own answers to harmful requests: unsafe unless refusals
            add_model_answers(name, f"{name}:sampled", cfg.sampled_per_source, "sampled", False,
                              lambda t: -1 if looks_like_refusal(t) else 1)
        like = f"{cfg.sampled_harmful[0]}:sampled" if cfg.sampled_harmful and cfg.sampled_benign_lookalikes else None
        for name in cfg.sampled_benign:  # the policy's own answers to benign (look-alike) requests: safe
            add_model_answers(name, f"{name}:sampled-benign", cfg.sampled_per_source, "sampled-benign", False,
                              lambda t: -1, like=like)
    if kind == "cost":
        from safealign.scoring.synthetic import prefill_engine

        prefill_engine.cache_clear()  # the generator is not needed past the data build
    for name in cfg.weak_safe_chosen:
        ex = [Example(p.messages, p.chosen, sign_a=-1, source=f"{name}:chosen-as-safe")
              for p in load_dataset(name, kind="preferences") if not looks_like_refusal(p.chosen)]
        add(f"{name}:chosen-as-safe", ex)
        if cfg.weak_safe_max:
            for split, rows in out[f"{name}:chosen-as-safe"].items():
                cap = cfg.weak_safe_max if split == "train" else max(1, cfg.weak_safe_max // 8)
                out[f"{name}:chosen-as-safe"][split] = rows[:cap]
    if kind == "reward" and cfg.refusal_negatives > 0:
        for name in cfg.pairs:
            for split in SPLITS:
                rng = random.Random(f"{cfg.split_salt}:{name}:{split}")
                templates = REFUSALS_TRAIN if split == "train" else REFUSALS_EVAL
                if cfg.hedged_refusals:
                    templates += HEDGED_REFUSALS_TRAIN if split == "train" else HEDGED_REFUSALS_EVAL
                rows = [Example(e.messages, e.a, rng.choice(templates), source=f"{name}:vs-refusal")
                        for e in out[name][split]
                        if not looks_like_refusal(e.a) and rng.random() < cfg.refusal_negatives]
                out.setdefault(f"{name}:vs-refusal", {s: [] for s in SPLITS})[split] = rows
    for splits in out.values():
        if cfg.train_half != "all":
            splits["train"] = [e for e in splits["train"] if _half(e.prompt, cfg.split_salt) == cfg.train_half]
        if cfg.max_per_source:
            splits["train"] = splits["train"][: cfg.max_per_source]
        for split in ("validation", "test"):
            splits[split] = splits[split][: cfg.max_eval_rows]
    return out


def _openers(split: str) -> Sequence[str]:
    """Compliance-opener templates of a split: held-out splits use a disjoint set."""
    return OPENERS_TRAIN if split == "train" else OPENERS_EVAL


def split_count(n_train: int, split: str) -> int:
    """Rows generated for one split: n_train in train, an eighth of it in each held-out split."""
    return n_train if split == "train" else max(1, n_train // 8)


def int_seed(seed: str) -> int:
    """A stable integer seed from a descriptive string seed."""
    return int(hashlib.sha1(seed.encode()).hexdigest()[:8], 16)


def _prefill_sample(rows: Sequence[Example], n_train: int, split: str, seed: str) -> list[Example]:
    """The rows of one split whose opener the prefill model continues (``split_count`` of them, at random)."""
    n = split_count(n_train, split)
    return random.Random(seed).sample(list(rows), min(n, len(rows)))


def _lookalike_sample(rows: Sequence[Example], harmful: Sequence[Example], n_train: int, split: str,
                      seed: str) -> list[Example]:
    """The ``split_count`` rows of one split worded most like ``harmful`` (same split)."""
    from safealign.data.lookalikes import mine_lookalikes

    if not harmful:
        return _prefill_sample(rows, n_train, split, seed)
    n = split_count(n_train, split)
    picked = mine_lookalikes([r.prompt for r in rows], [h.prompt for h in harmful], n, candidates=min(3000, 40 * n),
                             seed=int_seed(seed))
    return [rows[i] for i in picked]


def opener_for(prompt: str, template: str) -> str:
    """A compliance opener for one instruction (first line of the prompt, trailing period dropped)."""
    task = prompt.strip().split("\n")[0].rstrip(" .?!")
    task = task[:1].lower() + task[1:]
    return template.format(task=task)


def _with_openers(rows: Sequence[Example], fraction: float, seed: str, templates: Sequence[str],
                  source: str) -> list[Example]:
    """Pairs (refusal safer than a synthetic compliance opener), both labelled, for a fraction of rows."""
    rng = random.Random(seed)
    return [Example(e.messages, e.a, opener_for(e.prompt, rng.choice(templates)), -1, 1, source=source)
            for e in rows if rng.random() < fraction]


def add_prefixes(examples: Sequence[Example], n: int, min_fraction: float, seed: int) -> list[Example]:
    """Prefix augmentation: ``n`` truncated copies per row; a truncated response keeps its full label."""
    rng = random.Random(seed)
    out = list(examples)
    for e in examples:
        for _ in range(n):
            f = rng.uniform(min_fraction, 0.9)
            a, b = truncate_words(e.a, f), None if e.b is None else truncate_words(e.b, f)
            if a == e.a and (b is None or b == e.b):
                continue  # a one-word response has no proper prefix
            out.append(dataclasses.replace(e, a=a, b=b, fraction=f, full_a=e.a, full_b=e.b))
    return out


def at_fraction(examples: Sequence[Example], fraction: float) -> list[Example]:
    """Held-out rows with both responses cut to ``fraction`` of their words (the prefix-accuracy curve)."""
    if fraction >= 1:
        return list(examples)
    return [dataclasses.replace(e, a=truncate_words(e.a, fraction),
                                b=None if e.b is None else truncate_words(e.b, fraction), fraction=fraction,
                                full_a=e.a, full_b=e.b) for e in examples]


def labelled_responses(rows: Sequence[Example]) -> tuple[list[list[Message]], list[str], np.ndarray]:
    """Every response that carries a cost sign: (prompts, responses, unsafe labels [N] in {0, 1})."""
    prompts, responses, labels = [], [], []
    for r in rows:
        for text, sign in ((r.a, r.sign_a), (r.b, r.sign_b)):
            if text is not None and sign:
                prompts.append(r.messages)
                responses.append(text)
                labels.append(1.0 if sign > 0 else 0.0)
    return prompts, responses, np.array(labels)
