"""Where alignment settings sit on the refusal / over-refusal trade-off.

Reads evaluation folders (``safealign eval --out DIR``: DIR/metrics.json), groups them by setting, prints each
setting's seed means and a least-squares line through the settings' means, over-refusal = a + b * refusal, with
each setting's distance from it. A setting that really improves on the others sits well below the line (fewer
over-refusals at the same refusal); one that only trades one for the other sits on it.

    python bench/tradeoff.py runs/B_s0/eval runs/B_s1/eval runs/X_s0/eval ... [--min-seeds 3]

The setting's name is the run folder's name (the folder itself, or its parent when the folder is called
``eval``) without a trailing seed, ``s<N>`` or ``_s<N>``: ``Xs0`` and ``X_s3`` are both setting ``X``. The
line is fitted to the settings with at least ``--min-seeds`` seeds, each weighted equally; the others are
printed against it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HEADLINE = {"refusal": "harmful_refusal_rate", "over_refusal": "over_refusal_rate", "win_rate": "win_rate"}


def setting_of(folder: Path) -> str:
    """Setting name of a run folder: its name without a trailing seed (``Xs3`` -> ``X``)."""
    run = folder.parent if folder.name == "eval" else folder
    return re.sub(r"_?s\d+$", "", run.name) or run.name


def read_run(folder: Path) -> dict[str, float]:
    """The headline figures of one evaluation, in percent (NaN where a suite was not run)."""
    path = folder / "metrics.json"
    try:
        head = json.loads(path.read_text())["headline"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise SystemExit(f"{path}: not a safealign evaluation ({e})") from e
    return {k: 100 * head[v]["value"] if v in head else float("nan") for k, v in HEADLINE.items()}


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares (a, b) of y = a + b x."""
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="evaluation folders (each with metrics.json)")
    ap.add_argument("--min-seeds", type=int, default=3, help="settings with fewer seeds are not fitted")
    args = ap.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    for folder in args.folders:
        runs[setting_of(folder)].append(read_run(folder))
    means = {name: {k: float(np.mean([r[k] for r in rs])) for k in HEADLINE} | {"n": len(rs)}
             for name, rs in runs.items()}
    fitted = [n for n, m in means.items() if m["n"] >= args.min_seeds]
    line = None
    if len(fitted) >= 2:
        line = fit_line(np.array([means[n]["refusal"] for n in fitted]),
                        np.array([means[n]["over_refusal"] for n in fitted]))
    resid = {} if line is None else {n: m["over_refusal"] - (line[0] + line[1] * m["refusal"]) for n, m in means.items()}
    print("| setting | seeds | refusal | over-refusal | win-rate | over-refusal minus the line |")
    print("|---|---|---|---|---|---|")
    for name, m in sorted(means.items(), key=lambda kv: kv[1]["refusal"]):
        r = f"{resid[name]:+.1f}" if resid else ""
        mark = "" if name in fitted else " (not fitted)"
        print(f"| {name}{mark} | {m['n']} | {m['refusal']:.1f} | {m['over_refusal']:.1f} | {m['win_rate']:.1f} | {r} |")
    if line is None:
        print(f"\nfewer than two settings with >= {args.min_seeds} seeds: no line fitted")
        return 0
    a, b = line
    spread = np.std([resid[n] for n in fitted], ddof=2) if len(fitted) > 2 else float("nan")
    print(f"\nline over {len(fitted)} settings: over-refusal = {a:.1f} + {b:.3f} x refusal "
          f"(residual std {spread:.1f} points); at 90% refusal it predicts {a + 90 * b:.1f}% over-refusal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
