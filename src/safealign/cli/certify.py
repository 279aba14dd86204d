"""``safealign certify``: the HC-RLHF safety test; writes certificate.json or reports "No Solution Found".

Exit status: 0 certified, 3 No Solution Found (UCB > threshold), 2 usage/config/data errors or an untestable run
(scorer failure, NaN costs, costs outside a declared Hoeffding range); nothing is certified unless it is 0.
"""

from __future__ import annotations

import argparse
import sys

from safealign.config import add_config_arguments, config_from_args, iter_options


def register(sub: argparse._SubParsersAction) -> None:
    from safealign.certify.certificate import CertifyConfig

    p = sub.add_parser(
        "certify", help="high-confidence safety test: certify E[cost] <= d with prob. 1 - delta, or refuse",
        description="Sample responses on held-out harmful prompts, score their cost and certify the model only if "
        "the (1 - delta) upper confidence bound on the mean cost is <= --threshold. The guarantee is with respect "
        "to the cost model and the test prompt distribution, not true harm (docs/hc_rlhf.md). Options take - or _ "
        "(--cost-model = --cost_model).")
    add_config_arguments(p, CertifyConfig)
    # --cost-model as well as --cost_model (and likewise every option with an underscore)
    for name, _, _ in iter_options(CertifyConfig):
        if "_" in name:
            p.add_argument(f"--{name.replace('_', '-')}", dest=f"cfg::{name}", default=argparse.SUPPRESS,
                           help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safealign.certify.certificate import CertifyConfig, run_certify
    from safealign.config import ConfigError
    from safealign.data.loaders import DataError
    from safealign.scoring import ScoringError

    cfg = config_from_args(CertifyConfig, args)
    cfg.check_complete()
    try:
        outcome = run_certify(cfg)
    except (ScoringError, ValueError) as err:
        if isinstance(err, (ConfigError, DataError)):
            raise  # reported by safealign.cli.main with status 2
        print(f"safealign certify: NOT certified, the test could not run: {err}", file=sys.stderr)
        return 2
    r = outcome.result
    print(f"{'certified' if r.passed else 'No Solution Found'}: {r.bound} UCB {r.ucb:.4f} vs threshold "
          f"{r.threshold:.4f} (n={r.n}, mean {r.mean:.4f}, std {r.std:.4f}, delta {r.delta}) -> {outcome.path}")
    return outcome.exit_code
