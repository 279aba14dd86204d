"""Find or build scorers by name: ``load_scorer(path_or_name)`` and ``default_scorer(kind, variant)``.

Default scorers live in ``$SAFEALIGN_HOME/scorers/<kind>-<variant>`` and are trained on first use with
the shipped default config. The ``judge`` variant is the evaluation's held-out judge: another seed, the
other hash half of the training rows, and a split salt of its own, so it does not share the policy
scorer's training data (see docs/scorers.md for what that does and does not guarantee).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

from safealign import paths
from safealign.config import merge_dotted
from safealign.scoring.base import Scorer
from safealign.scoring.scorer import ModelScorer

log = logging.getLogger("safealign.scoring")

# Config keys that do not shape the trained model: the output path (homes move) and whether the test metrics
# were computed.
NOT_RECIPE = frozenset({"output", "evaluate_test"})

# Overrides of the shipped default config per variant (dotted keys, as on the command line).
VARIANTS: dict[str, dict[str, Any]] = {
    "policy": {"data.train_half": "a"},
    # The judge scores finished responses only: no prefix copies (half the trunk features to compute). It keeps
    # the short refusal templates only: a judge trained on the hedges the policy side learns to avoid would not
    # be independent of that fix, and its win-rates stay comparable with the runs before it.
    "judge": {"data.train_half": "b", "train.seed": 1, "data.prefixes_per_example": 0, "data.hedged_refusals": False},
    "full": {},
}


def scorer_dir(kind: str, variant: str = "policy") -> Path:
    return paths.home() / "scorers" / f"{kind}-{variant}"


def variant_config(kind: str, variant: str = "policy") -> Any:
    """The training config of a named variant: the shipped default plus the variant's overrides."""
    from safealign.scoring.train import ScorerTrainConfig

    if variant not in VARIANTS:
        raise ValueError(f"unknown scorer variant '{variant}'; known: {', '.join(VARIANTS)}")
    base = ScorerTrainConfig.default(kind).to_dict()
    merged = merge_dotted(base, {**VARIANTS[variant], "output": str(scorer_dir(kind, variant))})
    return ScorerTrainConfig.from_dict(merged, where=f"default {kind} scorer, variant {variant}")


def load_scorer(path_or_name: str | Path, *, device: str | None = None, batch_size: int = 32) -> Scorer:
    """A saved scorer from a directory, or a default one by name: ``cost``, ``reward-judge``, ``cost-policy``..."""
    p = Path(path_or_name).expanduser()
    if p.is_dir():
        return ModelScorer.load(p, device=device, batch_size=batch_size)
    name = str(path_or_name)
    kind, _, variant = name.partition("-")
    if kind in ("reward", "cost") and (variant or "policy") in VARIANTS:
        return default_scorer(kind, variant or "policy", device=device, batch_size=batch_size)  # type: ignore[arg-type]
    raise FileNotFoundError(f"'{name}' is neither a scorer directory nor a default scorer name "
                            f"(reward|cost)[-{'|'.join(VARIANTS)}]")


def default_scorer(kind: str, variant: str = "policy", *, device: str | None = None, batch_size: int = 32,
                   train_if_missing: bool = True) -> Scorer:
    """The default ``kind`` scorer of ``variant``; trained with the default config if not there yet."""
    if kind not in ("reward", "cost"):
        raise ValueError(f"kind must be 'reward' or 'cost', got {kind!r}")
    out, want = scorer_dir(kind, variant), variant_config(kind, variant)
    may_train = train_if_missing and not os.environ.get("SAFEALIGN_NO_TRAIN")
    if not (out / "scorer_config.json").exists():
        if not may_train:
            raise FileNotFoundError(f"no {kind} scorer at {out}; train it with `safealign train-scorer {kind} "
                                    f"--variant {variant}`")
        log.warning("no %s scorer at %s: training it with the default config (a few minutes on CPU)", kind, out)
        _train(want, device)
    elif changed := recipe_changes(out, want.to_dict(), _field_defaults(kind)):
        # A cached default trained by an older release would otherwise be used silently after the recipe moved.
        what = ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
        if may_train:
            log.warning("the %s scorer at %s was trained with another recipe than the current default (%s): "
                        "retraining it", kind, out, what)
            _train(want, device)
        else:
            log.warning("the %s scorer at %s was trained with another recipe than the current default (%s); "
                        "training is off, so it is used as it is", kind, out, what)
    return ModelScorer.load(out, device=device, batch_size=batch_size)


def _train(cfg: Any, device: str | None) -> None:  # cfg: ScorerTrainConfig
    from safealign.scoring.train import train_scorer

    # Trained on first use (the demo, an align run): the held-out test metrics are left to an explicit
    # `safealign train-scorer` (about 55 s of a fresh demo on a host without bf16); the model is the same.
    train_scorer(dataclasses.replace(cfg, evaluate_test=False), device=device)


def _field_defaults(kind: str) -> dict[str, Any]:
    from safealign.scoring.train import ScorerTrainConfig

    return ScorerTrainConfig(kind=kind).to_dict()


def recipe_changes(out: Path, want: dict[str, Any], field_defaults: dict[str, Any] | None = None) -> list[str]:
    """Dotted config keys whose values differ between the scorer saved at ``out`` and ``want``.

    The keys in ``NOT_RECIPE`` are not compared; a scorer saved without its training config reports none. A
    key the saved config lacks (an option added since) counts only where ``want`` differs from the option's
    field default in ``field_defaults``, which reproduces the behaviour from before the option existed.
    """
    import json

    stored = json.loads((out / "scorer_config.json").read_text()).get("train_config")
    if not isinstance(stored, dict):
        return []

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for k, v in d.items():
            rows.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return rows

    a, b, base = flat(stored), flat(want), flat(field_defaults or {})
    return sorted(k for k in set(a) | set(b) if k not in NOT_RECIPE and a.get(k) != b.get(k)
                  and not (k not in a and k in base and b.get(k) == base[k]))
