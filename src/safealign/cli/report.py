"""``safealign report``: re-render one run's report, or compare several runs side by side (no model needed)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="compare `safealign eval` runs side by side (or re-render one run's report)")
    p.add_argument("dirs", nargs="+", type=Path, help="output directories of `safealign eval`")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the comparison (default: re-render in place for one run, "
                        "./safealign-report for several)")
    p.add_argument("--labels", default=None, help="comma-separated names for the runs (default: model names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safealign.evaluate.report import write_report

    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    path = write_report(args.dirs, args.out, labels)
    print(f"report: {path}")
    return 0
