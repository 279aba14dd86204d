"""Monte Carlo check of the safety test's guarantee: how often does it certify a model that is NOT safe?

For a cost distribution with true mean ``mu`` we set the threshold just below it (``d = mu - gap``), so every
certification is a false one, draw ``trials`` independent safety-test sets of ``n`` costs, and count passes.
A valid bound certifies at most a ``delta`` fraction (up to Monte Carlo error). ``gap`` is tiny, which is the
hardest case: the further the true mean sits above ``d``, the rarer false certificates become.

``python -m safealign.certify.simulate`` prints the table in ``docs/hc_rlhf.md``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import integrate, special

from safealign.certify.bounds import hoeffding_ucb, student_t_ucb

Sampler = Callable[[np.random.Generator, tuple[int, int]], np.ndarray]


@dataclass(frozen=True)
class Family:
    """A synthetic cost distribution with its exact mean and, when bounded, its range."""

    name: str
    sample: Sampler
    mean: float
    low: float | None = None  # known range, needed by Hoeffding
    high: float | None = None
    note: str = ""


def _sigmoid_normal_mean(loc: float, scale: float) -> float:
    f = lambda z: special.expit(loc + scale * z) * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return float(integrate.quad(f, -12, 12)[0])


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("normal", lambda r, s: r.normal(0.0, 1.0, s), 0.0, note="N(0, 1): the t bound's own assumption"),
    Family("beta(10,10)", lambda r, s: r.beta(10, 10, s), 0.5, 0.0, 1.0, note="symmetric, bounded, near-normal"),
    Family("lognormal", lambda r, s: r.lognormal(0.0, 1.0, s), math.exp(0.5),
           note="LogNormal(0, 1): right-skewed, unbounded"),
    Family("beta(0.2,1.8)", lambda r, s: r.beta(0.2, 1.8, s), 0.1, 0.0, 1.0, note="strongly right-skewed on [0, 1]"),
    Family("bernoulli(0.05)", lambda r, s: (r.random(s) < 0.05).astype(np.float64), 0.05, 0.0, 1.0,
           note="binary unsafe flag, rare unsafe answers"),
    Family("sigmoid(N(-2,2))", lambda r, s: special.expit(r.normal(-2.0, 2.0, s)), _sigmoid_normal_mean(-2.0, 2.0),
           0.0, 1.0, note="P(unsafe) = sigmoid(cost) of a normal cost score"),
)}


def certify_rate(costs: np.ndarray, threshold: float, delta: float, bound: str,
                 low: float | None = None, high: float | None = None) -> float:
    """Fraction of rows of ``costs`` [trials, n] whose safety test passes (the same bound code as certify)."""
    if bound == "t":
        ucb = student_t_ucb(costs, delta)
    elif bound == "hoeffding":
        if low is None or high is None:
            raise ValueError("Hoeffding needs a bounded family")
        ucb = hoeffding_ucb(costs, delta, low, high)
    else:
        raise ValueError(f"unknown bound {bound}")
    return float(np.mean(np.asarray(ucb) <= threshold))


def false_certify_rates(family: Family, n: int, trials: int, delta: float, seed: int = 0,
                        gap: float = 1e-3) -> dict[str, float | None]:
    """Certify rates of t and Hoeffding when the true mean exceeds the threshold by ``gap``."""
    rng = np.random.default_rng(seed)
    costs = family.sample(rng, (trials, n))
    d = family.mean - gap
    out: dict[str, float | None] = {"t": certify_rate(costs, d, delta, "t")}
    out["hoeffding"] = (certify_rate(costs, d, delta, "hoeffding", family.low, family.high)
                        if family.low is not None else None)
    return out


def monte_carlo_se(rate: float, trials: int) -> float:
    """Binomial standard error of an estimated rate."""
    return math.sqrt(max(rate * (1 - rate), 1e-12) / trials)


def certify_power(family: Family, n: int, trials: int, delta: float, margin_sd: float = 0.5,
                  seed: int = 0) -> dict[str, float | None]:
    """Certify rates when the true mean sits ``margin_sd`` standard deviations BELOW the threshold (power)."""
    rng = np.random.default_rng(seed)
    sd = float(family.sample(np.random.default_rng(12345), (1, 200_000)).std())
    costs = family.sample(rng, (trials, n))
    d = family.mean + margin_sd * sd
    out: dict[str, float | None] = {"t": certify_rate(costs, d, delta, "t")}
    out["hoeffding"] = (certify_rate(costs, d, delta, "hoeffding", family.low, family.high)
                        if family.low is not None else None)
    return out


def table(ns: tuple[int, ...] = (10, 30, 100, 300), trials: int = 20000, delta: float = 0.05,
          seed: int = 0) -> str:
    """Markdown table of false-certification rates for every family and sample size."""
    rows = ["| cost distribution | n | t: rate | Hoeffding: rate |", "|---|---|---|---|"]
    for fam in FAMILIES.values():
        for i, n in enumerate(ns):
            r = false_certify_rates(fam, n, trials, delta, seed=seed + i)
            t_rate = r["t"]
            flag = " **> delta**" if t_rate > delta + 3 * monte_carlo_se(delta, trials) else ""
            h = "n/a (unbounded)" if r["hoeffding"] is None else f"{r['hoeffding']:.4f}"
            rows.append(f"| {fam.name} | {n} | {t_rate:.4f}{flag} | {h} |")
    return "\n".join(rows)


def power_table(ns: tuple[int, ...] = (10, 30, 100, 300), trials: int = 20000, delta: float = 0.05,
                margin_sd: float = 0.5, seed: int = 0) -> str:
    """Markdown table of certify rates for safe models (true mean = d - margin_sd * sd)."""
    rows = ["| cost distribution | n | t: rate | Hoeffding: rate |", "|---|---|---|---|"]
    for fam in FAMILIES.values():
        for i, n in enumerate(ns):
            r = certify_power(fam, n, trials, delta, margin_sd, seed=seed + 100 + i)
            h = "n/a" if r["hoeffding"] is None else f"{r['hoeffding']:.4f}"
            rows.append(f"| {fam.name} | {n} | {r['t']:.4f} | {h} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20000)
    p.add_argument("--delta", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, nargs="+", default=[10, 30, 100, 300])
    a = p.parse_args(argv)
    print(f"trials {a.trials}, delta {a.delta}, threshold = true mean - 1e-3; Monte Carlo SE at delta: "
          f"{monte_carlo_se(a.delta, a.trials):.4f}\n")
    print("False certification (true mean just above the threshold):\n")
    print(table(tuple(a.n), a.trials, a.delta, a.seed))
    print("\nPower (true mean 0.5 sd below the threshold):\n")
    print(power_table(tuple(a.n), a.trials, a.delta, 0.5, a.seed))


if __name__ == "__main__":
    main()
