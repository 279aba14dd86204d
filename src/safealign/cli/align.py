"""``safealign align``: constrained RL fine-tuning; ``safealign sweep``: one run per value of an option.

Multi-GPU: ``accelerate launch -m safealign.cli.main align --config ...`` runs the same loop under
DeepSpeed / FSDP / DDP as configured with ``accelerate config``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safealign.config import ConfigError, add_config_arguments, config_from_args
from safealign.train.config import AlignConfig

METHOD_ALIASES = {"safe-rlhf": "expected", "repo": "rectified", "hc-rlhf": "pessimistic", "reward-only": "reward_only",
                  "ppo-lag": "expected"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="constrained RL fine-tuning (Safe RLHF, RePO, CVaR, dual, HC-RLHF)")
    p.add_argument("--method", default=None,
                   help="shortcut for --constraint.method: expected|rectified|cvar|dual|fixed|reward_only|"
                        "pessimistic, or safe-rlhf|repo|hc-rlhf (hc-rlhf also runs the safety test at the end)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in out_dir")
    p.add_argument("--safety-fraction", type=float, default=0.5,
                   help="hc-rlhf: share of harmful prompts held out (by hash) for the safety test")
    p.add_argument("--delta", type=float, default=None, help="hc-rlhf: shortcut for --constraint.hc_delta")
    p.add_argument("--bound", choices=["t", "hoeffding"], default="t", help="hc-rlhf: safety-test bound")
    add_config_arguments(p, AlignConfig)
    p.set_defaults(func=run)

    s = sub.add_parser("sweep", help="run `align` once per value of one option (e.g. a CVaR risk spectrum)")
    s.add_argument("--param", required=True, help="dotted option name, e.g. constraint.cvar_alpha")
    s.add_argument("--values", required=True, help="comma-separated values, e.g. 0,0.5,0.9")
    s.add_argument("--method", default=None, help="as for align")
    add_config_arguments(s, AlignConfig)
    s.set_defaults(func=run_sweep)


def _config(args: argparse.Namespace, extra: dict | None = None) -> tuple[AlignConfig, bool]:
    method = args.method
    hc = method == "hc-rlhf"
    if method:
        setattr(args, "cfg::constraint.method", METHOD_ALIASES.get(method, method))
    if getattr(args, "delta", None) is not None:
        setattr(args, "cfg::constraint.hc_delta", args.delta)
    for k, v in (extra or {}).items():
        setattr(args, f"cfg::{k}", v)
    return config_from_args(AlignConfig, args), hc


def run(args: argparse.Namespace) -> int:
    cfg, hc = _config(args)
    if hc:
        return run_hc_rlhf(cfg, args)
    from safealign.train.trainer import RLTrainer

    summary = RLTrainer(cfg).train(resume=args.resume)
    print(json.dumps(summary, indent=2))
    return 0


def run_hc_rlhf(cfg: AlignConfig, args: argparse.Namespace) -> int:
    """Stage 1 on the candidate prompts with the pessimistic constraint, stage 2 the held-out safety test."""
    from safealign.certify.certificate import CertifyConfig, candidate_and_safety_prompts, run_certify
    from safealign.data.splits import assign_split
    from safealign.train.trainer import RLTrainer, load_prompt_pools

    if cfg.constraint.method != "pessimistic":
        raise ConfigError("--method hc-rlhf uses the pessimistic constraint")
    sources = list(cfg.data.harmful)
    candidate, safety = candidate_and_safety_prompts(sources, args.safety_fraction)
    cfg.constraint.hc_n_safety = len(safety)
    # candidates that are also in the evaluation's held-out split stay out of training
    train_split = cfg.data.split
    harmful = [m for m in candidate
               if train_split == "all" or assign_split(m[-1]["content"]) == train_split]
    _, benign = load_prompt_pools(cfg)
    print(f"hc-rlhf: {len(harmful)} candidate-selection prompts, {len(safety)} held-out safety-test prompts")
    trainer = RLTrainer(cfg, harmful_prompts=harmful, benign_prompts=benign)
    summary = trainer.train(resume=args.resume)
    cert_cfg = CertifyConfig(
        model=summary["policy_dir"], cost_model="cost" if cfg.cost_model == "default" else cfg.cost_model,
        threshold=cfg.constraint.threshold, delta=cfg.constraint.hc_delta, bound=args.bound,
        cost_transform=cfg.constraint.hc_cost_transform, prompts=sources, safety_fraction=args.safety_fraction,
        sampling=cfg.sampling.__class__(**{**cfg.sampling.to_dict(), "n": 1, "temperature": 0.7, "top_p": 0.95}))
    outcome = run_certify(cert_cfg, scorer=trainer.cost_scorer)
    return outcome.exit_code


def run_sweep(args: argparse.Namespace) -> int:
    from safealign.train.trainer import RLTrainer

    values = [v.strip() for v in args.values.split(",") if v.strip()]
    if not values:
        raise ConfigError("--values is empty")
    base_cfg, _ = _config(args)
    rows = []
    for v in values:
        out = str(Path(base_cfg.out_dir) / f"{args.param.replace('.', '_')}={v}")
        cfg, _ = _config(args, {args.param: v, "out_dir": out})
        summary = RLTrainer(cfg).train()
        rows.append({"value": v, "out_dir": out, **summary["last"]})
        print(json.dumps(rows[-1]))
    Path(base_cfg.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(base_cfg.out_dir) / "sweep.json").write_text(json.dumps(rows, indent=2))
    return 0
