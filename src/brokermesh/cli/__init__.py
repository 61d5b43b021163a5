"""The ``brokermesh`` command: argparse with one subcommand per module of this package.

Every module ``brokermesh/cli/<name>.py`` that defines ``register(subparsers)``
adds its subcommand there and binds its handler with
``parser.set_defaults(func=handler)``; the handler takes the parsed arguments
and returns the exit code. Adding a subcommand is adding a module: this file
does not change. Modules whose names start with an underscore are helpers.
Handlers should import heavy dependencies inside the handler, so that
``brokermesh --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

_LOGGER = logging.getLogger("brokermesh.cli")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every discovered subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="brokermesh", description="Run and inspect the brokermesh trading platform."
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level of the command itself (default INFO)",
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in _subcommand_modules():
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        # One broken module must not take the other subcommands down with it.
        except Exception as exc:
            print(
                f"brokermesh: subcommand module {name!r} failed to import: {exc}", file=sys.stderr
            )
            continue
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handler = getattr(args, "func", None)
    if handler is None:
        parser.print_help()
        return 2
    # The platform package is light (its modules are imported by the handlers).
    from brokermesh.platform import PlatformError

    try:
        return int(handler(args) or 0)
    except PlatformError as exc:
        print(f"brokermesh: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _subcommand_modules() -> list[str]:
    # Sorted, so --help lists commands in a stable order.
    return sorted(
        info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")
    )
