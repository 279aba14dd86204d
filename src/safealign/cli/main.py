"""``safealign`` entry point: dispatches to one module per subcommand."""

from __future__ import annotations

import importlib
import sys

from safealign import __version__
from safealign.config import ConfigError, SuggestingArgumentParser

# Each module defines register(subparsers) and sets a ``func(args) -> int`` default on its parser.
COMMAND_MODULES = ["demo", "align", "models", "data", "generate", "train_scorer", "certify", "eval", "report"]


def build_parser() -> SuggestingArgumentParser:
    parser = SuggestingArgumentParser(
        prog="safealign",
        description="Constrained fine-tuning and constrained decoding for safer language models.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"safealign {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=SuggestingArgumentParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"safealign.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as err:
        print(f"safealign: config error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("safealign: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # expected user-facing errors carry their own message
        from safealign.data.loaders import DataError
        from safealign.models.registry import ModelError

        if isinstance(err, (DataError, ModelError, FileNotFoundError)):
            print(f"safealign: error: {err}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
