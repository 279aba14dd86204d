"""``safealign eval``: safety suites, judges and per-prompt risk metrics for one model, with a readable report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safealign.config import add_config_arguments, config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on safety suites (harmful, over-refusal, helpful, or your own files)",
        description="Generate on each suite (cached: re-runs are instant and an interrupted run resumes), judge "
                    "refusal and harm, and write metrics.json, generations.jsonl, report.md and report.html.")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--model", dest="cfg::model", default=argparse.SUPPRESS, metavar="MODEL",
                   help="model to evaluate (embedded name, HF directory or hub id)")
    p.add_argument("--baseline", dest="cfg::baseline", default=argparse.SUPPRESS, metavar="MODEL",
                   help="baseline model for the helpful-suite win rate")
    p.add_argument("--suites", dest="cfg::suites", default=argparse.SUPPRESS, metavar="LIST",
                   help="comma-separated: harmful, over-refusal, helpful, or prompt files with a label column")
    p.add_argument("--limit", dest="cfg::limit", default=argparse.SUPPRESS, metavar="N",
                   help="at most N prompts per suite group (quick runs)")
    p.add_argument("--decoder", dest="cfg::decoding.decoder", default=argparse.SUPPRESS, metavar="NAME",
                   help="decoding-time safety strategy on the evaluated model (best_of_n, rejection, guided, "
                        "adaptive, guard, args; default: plain sampling); its options: --decoding.<name>.<option>")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_rest(p)
    p.set_defaults(func=run)


def _add_rest(p: argparse.ArgumentParser) -> None:
    """Every other EvalConfig option as --section.field (the short flags above cover the top-level ones)."""
    from safealign.evaluate.runner import EvalConfig

    tmp = argparse.ArgumentParser(add_help=False)
    add_config_arguments(tmp, EvalConfig)
    taken = {"--model", "--baseline", "--suites", "--limit", "--decoding.decoder"}
    for action in tmp._actions:
        if action.option_strings and not taken & set(action.option_strings):
            kwargs = {"dest": action.dest, "default": action.default, "help": action.help,
                      "metavar": action.metavar}
            if action.type is not None:
                kwargs["type"] = action.type
            p.add_argument(*action.option_strings, **kwargs)


def run(args: argparse.Namespace) -> int:
    from safealign.evaluate.runner import EvalConfig, evaluate

    cfg = config_from_args(EvalConfig, args)
    result = evaluate(cfg.model, cfg.suites, cfg, args.out, baseline=cfg.baseline, progress=not args.quiet)
    h = result["headline"]

    def show(key: str, label: str) -> None:
        if key in h:
            e = h[key]
            print(f"  {label:<44} {100 * e['value']:5.1f}%  [{100 * e['low']:.1f}, {100 * e['high']:.1f}]")

    print(f"\n{result['model']['name']} ({result['model']['id']})")
    show("harmful_refusal_rate", "harmful: refusal rate")
    show("harmful_compliance_rate", f"harmful: harmful compliance ({h.get('primary_harm_judge')})")
    show("violation_rate", "harmful: per-prompt violation rate")
    show("over_refusal_rate", "over-refusal: safe prompts refused")
    show("win_rate", "helpful: win rate vs baseline")
    show("win_rate_refusal_as_loss", "helpful: win rate, a refusal loses")
    if "mean_reward" in h:
        e = h["mean_reward"]
        print(f"  {'helpful: mean reward':<44} {e['value']:6.3f}  [{e['low']:.3f}, {e['high']:.3f}]")
    for note in result.get("notes", []):
        print(f"  note: {note}", file=sys.stderr)
    c = result["cost_accounting"]
    print(f"  {c['responses']} responses, {c['tokens_generated']} tokens; {c['cached_responses']} from cache; "
          f"wall {c['wall_seconds']:.0f} s")
    print(f"report: {args.out / 'report.html'}")
    return 0
