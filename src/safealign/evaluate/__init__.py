"""Evaluation harness: safety suites, refusal and harm judges, per-prompt risk metrics and readable reports.

Python API::

    from safealign.evaluate import EvalConfig, evaluate, write_report
    metrics = evaluate("smollm2-135m-instruct", ["harmful", "over-refusal", "helpful"], EvalConfig(), "runs/base")
    write_report(["runs/base", "runs/aligned"], "runs/compare")
"""

from .cache import EvalCache
from .judges import (
    ClassifierRefusalJudge,
    CombinedRefusalJudge,
    GuardLMScorer,
    HarmJudge,
    HFClassifierRefusalJudge,
    HFClassifierScorer,
    JudgeError,
    Judges,
    PatternRefusalJudge,
    RefusalJudge,
    RefusalVerdicts,
    build_harm_judge,
    build_refusal_judge,
    build_reward_scorer,
    train_harm_classifier,
    train_refusal_classifier,
)
from .metrics import (
    Estimate,
    bootstrap_ci,
    cvar,
    risk_summary,
    violation_rate,
    win_rate,
    win_rate_refusal_as_loss,
)
from .report import render_run, write_report
from .runner import (
    EvalConfig,
    JudgeConfig,
    MetricConfig,
    Policy,
    build_judges,
    engine_policy,
    evaluate,
    load_run,
    responder_policy,
)
from .suites import Suite, SuiteConfig, SuiteError, SuiteItem, load_suite, load_suites

__all__ = [
    "ClassifierRefusalJudge", "CombinedRefusalJudge", "Estimate", "EvalCache", "EvalConfig", "GuardLMScorer",
    "HFClassifierRefusalJudge", "HFClassifierScorer", "HarmJudge", "JudgeConfig", "JudgeError", "Judges",
    "MetricConfig", "PatternRefusalJudge", "Policy", "RefusalJudge", "RefusalVerdicts", "Suite", "SuiteConfig",
    "SuiteError", "SuiteItem", "bootstrap_ci", "build_harm_judge", "build_judges", "build_refusal_judge",
    "build_reward_scorer", "cvar", "engine_policy", "evaluate", "load_run", "load_suite", "load_suites",
    "render_run", "responder_policy", "risk_summary", "train_harm_classifier", "train_refusal_classifier",
    "violation_rate", "win_rate", "win_rate_refusal_as_loss", "write_report",
]
