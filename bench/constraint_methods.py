"""Constraint methods side by side at the same compute budget (the table of docs/results.md).

Each method aligns SmolLM2-135M-Instruct from the demo's config (same warm start, cached and shared; same
steps, prompts, samples and seed), then is evaluated with the demo's evaluation (configs/eval_demo.yaml,
base model as the win-rate baseline). Only the constraint section differs between runs.

    SAFEALIGN_HOME=... .venv/bin/python bench/constraint_methods.py --out runs/methods
    .venv/bin/python bench/constraint_methods.py --out runs/methods --methods expected,cvar:0.9 --steps 12

Prints a markdown table and writes it, with every number's source, to OUT/results.md and OUT/results.json.
Runs already finished under OUT are reused (delete a method's folder to redo it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = "expected,rectified,cvar:0.5,cvar:0.9,dual"


def _parse(spec: str) -> tuple[str, dict]:
    """'cvar:0.9' -> ('cvar-0.9', {'constraint.method': 'cvar', 'constraint.cvar_alpha': 0.9})."""
    method, _, alpha = spec.partition(":")
    over: dict = {"constraint.method": method}
    if alpha:
        over["constraint.cvar_alpha"] = float(alpha)
    if method == "dual":
        over["constraint.dual_inner_steps"] = 4  # a dual step every 4 policy steps (6 in the demo's 24)
    return (f"{method}-{alpha}" if alpha else method), over


def _fmt(x: object, pct: bool = False) -> str:
    if isinstance(x, dict) and "value" in x:
        lo, hi = x.get("low"), x.get("high")
        v = x["value"]
        if pct:
            return f"{100 * v:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]" if lo is not None else f"{100 * v:.1f}%"
        return f"{v:.3f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{v:.3f}"
    if isinstance(x, float):
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}"
    return "n/a" if x is None else str(x)


def _policy_risk(metrics: dict) -> dict:
    """Per-prompt risk on the harmful suite under the policy-side cost model (the one the constraints use)."""
    for suite in metrics["suites"].values():
        if suite["suite"]["kind"] == "harmful":
            return suite["groups"]["harmful"]["harm"].get("policy", {}).get("risk", {})
    return {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/methods"))
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma list; cvar:ALPHA sets the risk level")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo.yaml", help="base align config")
    ap.add_argument("--eval-config", type=Path, default=ROOT / "configs" / "eval_demo.yaml")
    ap.add_argument("--steps", type=int, default=0, help="override the RL steps of every method (0: config's)")
    args = ap.parse_args()

    from safealign.evaluate.runner import EvalConfig, evaluate
    from safealign.scoring import default_scorer
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import RLTrainer

    reward, cost = default_scorer("reward"), default_scorer("cost")
    eval_cfg = EvalConfig.from_yaml(args.eval_config)
    rows = []
    base = evaluate(eval_cfg.model, cfg=eval_cfg, out_dir=args.out / "eval-base", name="base")
    rows.append({"method": "base (no training)", "headline": base["headline"], "policy_risk": _policy_risk(base),
                 "train_s": 0.0, "rl_s": 0.0})
    warm_done = False
    for spec in args.methods.split(","):
        name, over = _parse(spec.strip())
        run_dir = args.out / name
        over |= {"out_dir": str(run_dir / "align")}
        if args.steps:
            over["steps"] = args.steps
        summary_file = run_dir / "align_summary.json"
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
        else:
            t0 = time.perf_counter()
            summary = RLTrainer(AlignConfig.from_yaml(args.config, over), reward_scorer=reward,
                                cost_scorer=cost).train()
            summary["wall_s"] = round(time.perf_counter() - t0, 1)
            run_dir.mkdir(parents=True, exist_ok=True)
            summary_file.write_text(json.dumps(summary, indent=2, default=str))
        if not warm_done and summary.get("policy_source") not in (None, eval_cfg.model):
            warm_done = True  # the shared warm start, before any RL step
            w = evaluate(summary["policy_source"], cfg=eval_cfg, out_dir=args.out / "warmstart-only" / "eval",
                         name="warm start only", baseline=eval_cfg.model)
            rows.append({"method": "warm start only (0 RL steps)", "headline": w["headline"],
                         "policy_risk": _policy_risk(w), "train_s": 0.0, "rl_s": 0.0})
        m = evaluate(summary["policy_dir"], cfg=eval_cfg, out_dir=run_dir / "eval", name=name,
                     baseline=eval_cfg.model)
        rows.append({"method": name, "headline": m["headline"], "policy_risk": _policy_risk(m),
                     "train_s": summary.get("wall_s"),
                     "rl_s": summary.get("wall_seconds"), "last_step": summary.get("last")})

    lines = ["| method | harmful refusal | over-refusal (XSTest safe) | win-rate vs base | harmful compliance: judge / "
             "policy cost model | mean cost | CVaR0.1 cost | violating prompts | RL wall (s) | final λ |",
             "|" + "---|" * 10]
    for r in rows:
        h, risk = r["headline"], r["policy_risk"]
        by = h.get("harmful_compliance_by_judge", {})
        lam = r.get("last_step", {}) or {}
        lines.append(" | ".join([
            f"| {r['method']}", _fmt(h.get("harmful_refusal_rate"), True), _fmt(h.get("over_refusal_rate"), True),
            _fmt(h.get("win_rate"), True),
            " / ".join(_fmt(by[j]["value"], True) for j in ("judge", "policy") if j in by),
            _fmt(risk.get("mean_cost")), _fmt(risk.get("cvar_cost")), _fmt(risk.get("violation_rate"), True),
            f"{r.get('rl_s') or 0:.0f}", _fmt(lam.get("constraint/lambda")) + " |"]))
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
