"""``python -m pytest_llmperf list [--storage DIR]``: the runs saved with --llmperf-save or
--llmperf-autosave, oldest first.  ``python -m pytest_llmperf configs RUN.json...``: which
configuration to deploy (pytest_llmperf.configs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate

from pytest_llmperf.configs import cli as configs_cli
from pytest_llmperf.store.documents import describe_saved, saved_runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_llmperf",
                                     description="pytest-llmperf's saved runs")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list the saved runs")
    listing.add_argument("--storage", type=Path, default=Path(".llmperf"),
                         help="the storage directory (--llmperf-storage; default .llmperf)")
    configs_cli.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "configs":
        return configs_cli.run(args)
    runs = saved_runs(args.storage)
    if not runs:
        print(f"no saved runs in {args.storage}")
        return 0
    print(tabulate(describe_saved(runs), headers=["file", "name", "created (UTC)", "git commit",
                                                  "windows"], tablefmt="simple"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
