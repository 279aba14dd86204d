"""``safealign data``: list the named datasets and inspect / validate any dataset or file."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, is_dataclass

from safealign.data import registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list named datasets; show or validate a dataset or file")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    ls = dsub.add_parser("list", help="named datasets with rows, kind and license")
    ls.set_defaults(func=_list)
    show = dsub.add_parser("show", help="load a dataset (name or path), report bad rows, print examples")
    show.add_argument("dataset", help="a named dataset (see `data list`) or a CSV/JSON/JSONL/parquet file")
    show.add_argument("--split", choices=["train", "validation", "test"], default=None,
                      help="show one deterministic hash split")
    show.add_argument("-n", type=int, default=3, help="examples to print")
    show.add_argument("--skip-bad-rows", action="store_true", help="skip malformed rows and report how many")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    for info in registry.list_datasets():
        print(f"{info.name:16s} {info.kind:13s} {info.rows:6d} rows  {info.license}\n    {info.description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    recs = registry.load_dataset(args.dataset, split=args.split, skip_bad_rows=args.skip_bad_rows or None)
    report = getattr(recs, "report", None)
    print(f"{args.dataset}: {len(recs)} records" + (f" (split {args.split})" if args.split else ""))
    if report is not None and report.n_skipped:
        print(f"skipped {report.n_skipped} bad rows, e.g.: " + "; ".join(report.reasons[:3]))
    for rec in recs[: args.n]:
        obj = asdict(rec) if is_dataclass(rec) else rec
        print(json.dumps(obj, ensure_ascii=False, default=str)[:600])
    return 0
