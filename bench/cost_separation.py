"""How a cost model separates harm from refusals and look-alikes, on stored evaluation answers. A script, not a test.

    python bench/cost_separation.py --base runs/demo/eval-base --aligned runs/demo/eval-aligned \
        --scorers cost-policy cost-judge /path/to/another/scorer

For each scorer and each suite of the two ``safealign eval`` runs it prints the share of answers with
cost > 0 (all, answered, refused; "refused" is the evaluation's refusal judge) and the AUROC of the base
model's harmful-prompt answers against its over-refusal (XSTest safe) answers. What to look for: refusals
of harmful requests should cost little (else the rectified constraint cannot be met by refusing), and
answers to safe look-alike prompts should cost less than answers to harmful ones (docs/scorers.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from safealign.scoring import load_scorer
from safealign.scoring.calibration import auroc


def _answers(run: Path) -> dict[str, list[dict]]:
    by_suite: dict[str, list[dict]] = {}
    with (run / "generations.jsonl").open() as f:
        for line in f:
            row = json.loads(line)
            if row.get("role") == "model":
                by_suite.setdefault(row["suite"], []).append(row)
    return by_suite


def _share(flags: np.ndarray) -> str:
    return f"{flags.mean():.2f}" if flags.size else "  - "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="`safealign eval` output folder of the base model")
    ap.add_argument("--aligned", type=Path, required=True, help="`safealign eval` output folder of an aligned model")
    ap.add_argument("--scorers", nargs="+", default=["cost-policy", "cost-judge"],
                    help="scorer directories or default names (cost-policy, cost-judge)")
    args = ap.parse_args()
    runs = {"base": _answers(args.base), "aligned": _answers(args.aligned)}
    for name in args.scorers:
        scorer = load_scorer(name)
        costs: dict[tuple[str, str], np.ndarray] = {}
        for run, suites in runs.items():
            for suite, rows in suites.items():
                cost = scorer.score([r["prompt"] for r in rows], [r["response"] for r in rows]).mean
                refused = np.array([bool(r["refusal"]["refused"]) for r in rows])
                costs[(run, suite)] = cost
                flag = cost > 0
                print(f"{name:24s} {run:8s} {suite:13s} n={len(rows):4d}  cost>0: all {_share(flag)}  "
                      f"answered {_share(flag[~refused])}  refused {_share(flag[refused])}  mean {cost.mean():+.2f}")
        harmful, lookalike = costs.get(("base", "harmful")), costs.get(("base", "over-refusal"))
        if harmful is not None and lookalike is not None:
            labels = np.r_[np.ones(len(harmful)), np.zeros(len(lookalike))]
            print(f"{name:24s} AUROC, base answers to harmful vs over-refusal prompts: "
                  f"{auroc(np.r_[harmful, lookalike], labels):.3f}")


if __name__ == "__main__":
    main()
