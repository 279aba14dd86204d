"""``safealign train-scorer reward|cost``: train a reward or cost model and write its metrics JSON."""

from __future__ import annotations

import argparse
import json
import sys

from safealign.config import ConfigError, add_config_arguments, merge_dotted


def register(sub: argparse._SubParsersAction) -> None:
    from safealign.scoring.hub import VARIANTS
    from safealign.scoring.train import ScorerTrainConfig

    p = sub.add_parser("train-scorer", help="train a reward (helpfulness) or cost (harm) model",
                       description="Train a reward model (Bradley-Terry) or a cost model (Safe RLHF loss: cost > 0 "
                                   "means unsafe) with K ensemble heads and prefix augmentation; prints held-out "
                                   "metrics and writes metrics.json next to the checkpoint.")
    p.add_argument("kind", choices=["reward", "cost"], help="reward (helpfulness) or cost (harmlessness)")
    p.add_argument("--variant", choices=sorted(VARIANTS), default=None,
                   help="apply a named variant (policy: data half a; judge: half b, another seed) and save it "
                        "where default_scorer() looks: $SAFEALIGN_HOME/scorers/<kind>-<variant>")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_config_arguments(p, ScorerTrainConfig)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):  # -> ScorerTrainConfig
    """Default config of the kind <- YAML file <- variant overrides <- command-line options."""
    from safealign.scoring.hub import VARIANTS, scorer_dir
    from safealign.scoring.train import ScorerTrainConfig

    cli = {k[len("cfg::"):]: v for k, v in vars(args).items() if k.startswith("cfg::")}
    if "kind" in cli and cli["kind"] != args.kind:
        raise ConfigError(f"--kind {cli['kind']} contradicts the positional kind '{args.kind}'")
    over: dict = {}
    if args.variant:
        over |= {**VARIANTS[args.variant], "output": str(scorer_dir(args.kind, args.variant))}
    over |= {**cli, "kind": args.kind}
    if args.config is not None:
        cfg = ScorerTrainConfig.from_yaml(args.config, over)
        if cfg.kind != args.kind:
            raise ConfigError(f"{args.config} is a {cfg.kind} config, not {args.kind}")
        return cfg
    # without a YAML file: the shipped default of the kind (per-kind defaults included), as hub.variant_config
    return ScorerTrainConfig.from_dict(merge_dotted(ScorerTrainConfig.default(args.kind).to_dict(), over),
                                       where="command line")


def run(args: argparse.Namespace) -> int:
    from safealign.scoring.train import train_scorer

    cfg = build_config(args)
    res = train_scorer(cfg, progress=not args.quiet, device=args.device)
    print(summarise(res.metrics))
    print(f"saved {cfg.kind} scorer to {res.output} (metrics: {res.output / 'metrics.json'})", file=sys.stderr)
    return 0


def summarise(m: dict) -> str:
    """A short human-readable digest of a metrics JSON."""
    lines = [f"{m['kind']} scorer: {m['train_rows_with_prefixes']} training rows, {m['distinct_texts']} texts, "
             f"best at {m['best_at']}, train time {m['timings']['train_total_s']:.0f} s ({m['threads']} threads)"]
    test = m.get("test", {})
    for name, s in test.get("sources", {}).items():
        parts = [f"{k}={s[k]:.3f}" for k in ("pairwise_acc", "sign_acc", "ece") if k in s]
        lines.append(f"  test {name:32s} " + " ".join(parts))
    if "all_labelled" in test:
        a = test["all_labelled"]
        keys = ("sign_acc", "ece", "sign_error_auroc_of_std", "sign_error_auroc_of_inverse_z")
        lines.append("  test all labelled responses     " + " ".join(f"{k}={a[k]:.3f}" for k in keys if k in a))
    for name, curve in test.get("prefix_curve", {}).items():
        lines.append(f"  prefix curve {name:26s} " + json.dumps(curve))
    return "\n".join(lines)
