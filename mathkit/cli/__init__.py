"""``python -m mathkit <command>``: run notebooks, solve/chat with an arithmetic model, evaluate, generate, export.

Each command lives in its own module that exposes ``register(subparsers)``; the parser it adds
sets ``func`` to a callable taking the parsed arguments and returning an exit code. Errors of
mathkit (:class:`~mathkit.errors.MathkitError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from mathkit.errors import MathkitError

# Modules that add a sub-command; imported lazily so ``--help`` stays fast and a missing optional
# dependency of one command does not break the others.
COMMAND_MODULES = (
    "mathkit.cli.run",       # run, index
    "mathkit.cli.solve",     # solve, chat
    "mathkit.cli.evaluate",  # evaluate
    "mathkit.cli.generate",  # generate
    "mathkit.cli.export",    # export
    "mathkit.cli.train",     # train (also under accelerate launch)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mathkit", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # command not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except MathkitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
