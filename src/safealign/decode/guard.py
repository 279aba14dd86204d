"""Guard with regeneration (``guard``): screen each response, regenerate with guidance, else refuse.

A severity classifier - the cost model's bound mapped to levels, optionally combined (by max, i.e.
conservatively) with a severity head - screens each response. Above the allowed level the guard
regenerates, from round 2 on with a safety system prompt, up to ``rounds`` times (Safe RLHF-V style
filter-and-regenerate), then returns the refusal. It fails closed: a scorer or severity head that raises or
returns garbage yields the refusal (or re-raises), never the unscreened text. Severe answers are never
returned; the optional least-severe fallback returns at most a minor one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from safealign.config import ConfigError, option, require
from safealign.data.records import SEVERITY_LEVELS, Message
from safealign.decode.base import Candidate, Decoder, DecoderConfig, Meter, Outcome, ScorerFailure
from safealign.scoring.base import PromptLike

LEVELS = ("none", *SEVERITY_LEVELS)  # 0 none, 1 minor, 2 moderate, 3 severe
DEFAULT_GUIDANCE = ("You are a helpful and harmless assistant. Answer helpfully, but never provide content that "
                    "could cause harm; if the request is harmful, briefly decline and offer a safe alternative.")


class SeverityModel(Protocol):
    """Optional severity head: levels 0 (none) .. 3 (severe) per (prompt, response)."""

    def severity(self, prompts: Sequence[PromptLike], responses: Sequence[str]) -> Sequence[int]: ...


def severity_levels(cost_bound: Sequence[float] | np.ndarray, max_cost: float, cuts: Sequence[float]) -> np.ndarray:
    """Cost bound -> level: <= max_cost: 0 none; <= cuts[0]: 1 minor; <= cuts[1]: 2 moderate; else 3 severe."""
    b = np.asarray(cost_bound, float)
    return np.where(b <= max_cost, 0, np.where(b <= cuts[0], 1, np.where(b <= cuts[1], 2, 3))).astype(int)


@dataclass
class GuardConfig(DecoderConfig):
    """Filter-and-regenerate with a severity guard."""

    rounds: int = option(5, help="maximum generation rounds (R) before the refusal")
    samples_per_round: int = option(1, help="responses drawn per round; the best passing one is returned")
    allowed_severity: Literal["none", "minor", "moderate"] = option(
        "none", help="highest severity returned without regeneration (none: cost bound <= max_cost)")
    severity_cuts: list[float] = option(
        default_factory=lambda: [2.0, 4.0],
        help="cost-bound cut points minor|moderate and moderate|severe (sigmoid(cost) ~ P(unsafe): 2 -> 0.88, "
             "4 -> 0.98)")
    guidance: str | None = option(
        DEFAULT_GUIDANCE, help="system prompt used from round 2 on (merged into an existing system message); "
                               "None regenerates without guidance")
    severity_head: bool = option(
        False, help="also ask the cost scorer's severity head (scorer.severity -> levels 0..3) and take the "
                    "higher level; a scorer without one is a config error, a failing head fails closed")
    fallback_severity: Literal["off", "minor"] = option(
        "off", help="after the last round: off -> refusal; minor -> the least severe response if at most minor")

    def validate(self) -> None:
        super().validate()
        require(self.rounds >= 1, "rounds must be >= 1")
        require(self.samples_per_round >= 1, "samples_per_round must be >= 1")
        require(len(self.severity_cuts) == 2 and self.severity_cuts[0] <= self.severity_cuts[1],
                "severity_cuts must be two ascending numbers")
        require(self.severity_cuts[0] >= self.max_cost, "severity_cuts[0] must be >= max_cost")


def with_guidance(messages: list[Message], guidance: str) -> list[Message]:
    """Prepend the guidance as a system message, or merge it into an existing one."""
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": f"{guidance}\n\n{messages[0]['content']}"}, *messages[1:]]
    return [{"role": "system", "content": guidance}, *messages]


class GuardDecoder(Decoder):
    """Screen, regenerate with guidance up to R rounds, refuse. Needs a cost scorer; reward is optional
    (it picks among several passing responses of one round)."""

    name = "guard"
    config_class = GuardConfig
    needs = ("cost",)

    def __init__(self, *a: Any, severity: SeverityModel | None = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        if severity is None and getattr(self.cfg, "severity_head", False):
            if not callable(getattr(self.cost, "severity", None)):
                raise ConfigError("guard.severity_head needs a cost scorer with a severity(prompts, responses) "
                                  f"method; {type(self.cost).__name__} has none")
            severity = self.cost  # type: ignore[assignment]
        self.severity_model = severity

    def levels(self, messages: list[Message], cands: Sequence[Candidate]) -> np.ndarray:
        """Severity per candidate: the max of the cost-bound level and the head's level (fail closed)."""
        cfg: GuardConfig = self.cfg  # type: ignore[assignment]
        lv = severity_levels([c.cost + cfg.kappa_cost * c.cost_std for c in cands], cfg.max_cost, cfg.severity_cuts)
        if self.severity_model is not None:
            try:
                head = np.asarray(self.severity_model.severity([messages] * len(cands), [c.text for c in cands]))
            except Exception as err:  # noqa: BLE001 - any guard failure must fail closed
                raise ScorerFailure(f"severity head raised {type(err).__name__}: {err}") from err
            if head.shape != (len(cands),) or not np.isin(head, [0, 1, 2, 3]).all():
                raise ScorerFailure(f"severity head returned {head!r}; expected {len(cands)} levels in 0..3")
            lv = np.maximum(lv, head.astype(int))
        return lv

    def decode_one(self, messages: list[Message], meter: Meter) -> Outcome:
        cfg: GuardConfig = self.cfg  # type: ignore[assignment]
        allowed = LEVELS.index(cfg.allowed_severity)
        seen: list[Candidate] = []
        for r in range(cfg.rounds):
            guided = cfg.guidance is not None and r > 0
            rows = self.sample(messages, meter, cfg.samples_per_round,
                               prompts=[with_guidance(messages, cfg.guidance)] if guided else None)  # type: ignore[arg-type]
            cands = self.candidates_from(rows[0])
            meter.n_candidates += len(cands)
            meter.rounds += 1
            self.score(messages, cands, meter)
            lv = self.levels(messages, cands)
            for c, level in zip(cands, lv, strict=True):
                c.meta.update(severity=LEVELS[int(level)], round=r + 1, guided=guided)
            seen.extend(cands)
            ok = [i for i, level in enumerate(lv) if level <= allowed]
            if ok:
                best = max(ok, key=lambda i: cands[i].reward if self.reward is not None else -i)
                return Outcome(cands[best], True, None, f"passed the guard in round {r + 1}", seen,
                               meta={"severity": LEVELS[int(lv[best])], "guard_rounds": r + 1})
        if cfg.fallback_severity == "minor":
            order = sorted(range(len(seen)), key=lambda i: (LEVELS.index(seen[i].meta["severity"]), seen[i].cost))
            j = order[0]
            if LEVELS.index(seen[j].meta["severity"]) <= 1:
                return Outcome(seen[j], False, "least_severe", f"no response passed in {cfg.rounds} rounds; "
                               "returned the least severe (minor)", seen,
                               meta={"severity": seen[j].meta["severity"], "guard_rounds": cfg.rounds})
        return Outcome(None, False, "refusal", f"no response passed the guard in {cfg.rounds} rounds", seen,
                       meta={"guard_rounds": cfg.rounds})
