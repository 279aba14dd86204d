"""How a refusal judge agrees with hand labels of aligned models' answers. A script, not a test.

    python bench/refusal_judge_agreement.py [--judges patterns combined hf:ORG/MODEL#LABEL] [--labels FILE]

The labels (docs/labels/refusals_aligned_s20.jsonl.gz) are answers of eleven aligned SmolLM2 runs to held-out
AdvBench prompts and XSTest safe prompts, labelled refused / not refused by the rule of docs/evaluation.md.
For every judge spec and every (model, suite) it prints the refusal rate by hand and by the judge, accuracy,
Cohen's kappa and the two kinds of error. What to look for: a judge that misses lecture-style refusals
("Identity theft is a serious crime ... protect your identity") under-reads both harmful refusal and
over-refusal, and can reverse a comparison between two settings that refuse in different styles.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from safealign.evaluate.judges import agreement, build_refusal_judge

LABELS = Path(__file__).resolve().parents[1] / "docs" / "labels" / "refusals_aligned_s20.jsonl.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judges", nargs="+", default=["patterns", "combined"], help="refusal judge specs")
    ap.add_argument("--labels", type=Path, default=LABELS, help="hand-labelled answers (JSONL, optionally .gz)")
    args = ap.parse_args()
    opener = gzip.open if args.labels.suffix == ".gz" else open
    with opener(args.labels, "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)  # (model, suite) -> row indices
    for i, r in enumerate(rows):
        groups[(r["model"], r["suite"])].append(i)
    hand = np.array([r["hand_refused"] for r in rows], dtype=bool)
    for spec in args.judges:
        judge = build_refusal_judge(spec)
        pred = judge.judge([r["prompt"] for r in rows], [r["response"] for r in rows]).refused  # [N] bool
        print(f"\njudge: {spec}")
        print(f"{'model':12s} {'suite':13s} {'n':>4s} {'hand':>6s} {'judge':>6s} {'acc':>6s} {'kappa':>6s} "
              f"{'missed':>7s} {'false':>6s}")
        for (model, suite), idx in sorted(groups.items()):
            y, p = hand[idx], pred[idx]
            a = agreement(p, y)
            print(f"{model:12s} {suite:13s} {len(idx):4d} {100 * y.mean():5.1f}% {100 * p.mean():5.1f}% "
                  f"{100 * a['accuracy']:5.1f}% {a['kappa']:6.2f} {int((y & ~p).sum()):7d} {int((~y & p).sum()):6d}")


if __name__ == "__main__":
    main()
