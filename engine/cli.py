"""The command line: `python -m engine COMMAND ...` (and `python -m engine --validate`).

Exit codes are a contract other tools rely on:
  0  success
  1  a runtime failure (broker unreachable at start, an unexpected error)
  2  invalid input: a bad config, machine or rule file, or bad command-line usage
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from engine.paths import DEFAULT_CONFIG_DIR, DEFAULT_MACHINES_DIR, DEFAULT_RULES_DIR

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2


def _add_file_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG_DIR, metavar="DIR",
                        help="folder holding settings.yaml and bots.yaml (default: config/)")
    parser.add_argument("--machines", type=Path, default=DEFAULT_MACHINES_DIR, metavar="DIR",
                        help="folder of machine files (default: machines/)")
    parser.add_argument("--rules", type=Path, default=DEFAULT_RULES_DIR, metavar="DIR",
                        help="folder of rule files (default: rules/)")


def cmd_validate(args: argparse.Namespace) -> int:
    from engine.validate import validate

    started = time.perf_counter()
    report = validate(args.config, args.machines, args.rules)
    if report.ok:
        print(f"{report.summary()} ({time.perf_counter() - started:.2f} s)")
        return EXIT_OK
    for problem in report.problems:
        print(problem)
    count = len(report.problems)
    print(f"{count} error{'s' if count != 1 else ''}")
    return EXIT_INVALID


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Trading Hydra: a fail-closed trading engine whose bots are state machines declared in YAML.",
    )
    parser.add_argument("--validate", action="store_true", help="check every config, machine and rule file")
    _add_file_options(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser("validate", help="check every config, machine and rule file")
    _add_file_options(validate)
    validate.set_defaults(handler=cmd_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        if args.validate:
            return cmd_validate(args)
        parser.print_help()
        return EXIT_INVALID
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
