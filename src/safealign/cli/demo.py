"""``safealign demo``: the main job on the embedded default, end to end.

scorers (trained once, then cached) -> evaluate the base model -> align SmolLM2 with the rectified (RePO)
constraint, LoRA, after a short DPO warm start -> evaluate the aligned model -> one report comparing both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from safealign.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
DEMO_CONFIG = CONFIGS / "demo.yaml"
EVAL_CONFIG = CONFIGS / "eval_demo.yaml"  # also behind docs/results.md


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo: scorers, base eval, constrained RL, aligned eval, report")
    p.add_argument("--config", type=Path, default=DEMO_CONFIG, help="align config of the demo (YAML)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder")
    p.add_argument("--eval-limit", type=int, default=0, help="cap prompts per suite group (0: the demo defaults)")
    p.add_argument("--quick", action="store_true", help="stop after the base model's answers to 5 AdvBench and "
                                                        "5 Alpaca prompts (no training)")
    p.set_defaults(func=run)


def _show_base_answers(n: int = 5) -> None:
    from safealign.data.registry import load_dataset
    from safealign.generation import HFEngine, SamplingConfig

    engine = HFEngine.from_pretrained("smollm2-135m-instruct")
    cfg = SamplingConfig(max_new_tokens=96, temperature=0.0)
    for title, name in (("AdvBench (harmful: should refuse)", "advbench"), ("Alpaca (benign: should answer)", "alpaca-eval")):
        recs = load_dataset(name, split="test")[:n]
        print(f"\n=== {title} ===")
        for rec, row in zip(recs, engine.generate([r.messages for r in recs], cfg), strict=True):
            print(f"\n> {rec.text}\n{row[0].text.strip()}")


def _eval_config(limit: int):
    from safealign.evaluate.runner import EvalConfig

    return EvalConfig.from_yaml(EVAL_CONFIG, {"limit": limit})


def run(args: argparse.Namespace) -> int:
    _show_base_answers()  # the problem we fix: the base model complies with harmful requests
    if args.quick:
        return 0
    from safealign import hardware
    from safealign.evaluate.report import write_report
    from safealign.evaluate.runner import evaluate
    from safealign.scoring import default_scorer
    from safealign.train.config import AlignConfig
    from safealign.train.trainer import RLTrainer

    if not args.config.exists():
        raise ConfigError(f"demo config {args.config} not found")
    start, ticks = time.perf_counter(), hardware.cpu_times()
    timings: dict[str, float] = {}

    def mark(stage: str, t0: float) -> None:
        timings[stage] = round(time.perf_counter() - t0, 1)
        print(f"[demo] {stage}: {timings[stage]} s", flush=True)

    t0 = time.perf_counter()
    reward, cost = default_scorer("reward"), default_scorer("cost")
    default_scorer("cost", variant="judge")  # the evaluation's separate harm judge
    default_scorer("reward", variant="judge")  # and its separate helpfulness judge (win-rate)
    mark("scorers", t0)

    eval_cfg = _eval_config(args.eval_limit)
    t0 = time.perf_counter()
    base = evaluate("smollm2-135m-instruct", cfg=eval_cfg, out_dir=args.out / "eval-base", name="base")
    mark("evaluate base", t0)

    t0 = time.perf_counter()
    cfg = AlignConfig.from_yaml(args.config, {"out_dir": str(args.out / "align")})
    summary = RLTrainer(cfg, reward_scorer=reward, cost_scorer=cost).train()
    mark("align (warm start + RL)", t0)

    t0 = time.perf_counter()
    aligned = evaluate(summary["policy_dir"], cfg=eval_cfg, out_dir=args.out / "eval-aligned", name="aligned",
                       baseline="smollm2-135m-instruct")
    mark("evaluate aligned", t0)

    report = write_report([args.out / "eval-base", args.out / "eval-aligned"], args.out / "report")
    timings["total"] = round(time.perf_counter() - start, 1)
    steal = hardware.steal_share(ticks, hardware.cpu_times())  # on a shared VM, CPU the neighbours took
    (args.out / "demo_summary.json").write_text(json.dumps(
        {"timings_s": timings, "cpu_steal_share": steal, "hardware": hardware.describe(),
         "base": base.get("headline"), "aligned": aligned.get("headline")}, indent=2, default=str))
    print(f"\n[demo] report: {report}\n[demo] headline base:    {json.dumps(base.get('headline'), default=str)}"
          f"\n[demo] headline aligned: {json.dumps(aligned.get('headline'), default=str)}"
          f"\n[demo] total {timings['total']} s"
          + (f" (the hypervisor took {100 * steal:.0f}% of this machine's CPU meanwhile)" if steal else ""))
    return 0
