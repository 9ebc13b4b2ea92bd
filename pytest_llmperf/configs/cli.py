"""``python -m pytest_llmperf configs RUN.json... [--price 'GPU=0.79/h'] [--users N | --rate R]
[--markdown OUT.md] [--html OUT.html] [--chart-dir DIR]``: which configuration to deploy."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from pytest_llmperf.configs.compare import compare_configs
from pytest_llmperf.configs.configuration import label_of
from pytest_llmperf.configs.history import (
    history_markdown,
    history_of,
    history_terminal,
    newest_of_each,
)
from pytest_llmperf.configs.prices import PriceError, Prices, parse_price
from pytest_llmperf.configs.render import render_markdown, render_terminal
from pytest_llmperf.store.documents import StoreError, load_run
from pytest_llmperf.store.run_document import RunDocument
from pytest_llmperf.store.writing import write_atomic

__all__ = ["add_parser", "run"]

HELP = "compare runs of several configurations: which to deploy"


def _price(text: str) -> str:
    try:
        parse_price(text)
    except PriceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _users(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of users") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least 1 user")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate in requests per second") \
            from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite rate above 0 req/s")
    return value


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("configs", help=HELP, description=HELP)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN.json",
                        help="result documents (.llmperf/NNNN_NAME.json, --llmperf-json, "
                             "llmperf-output/results.json)")
    parser.add_argument("--price", action="append", type=_price, default=[],
                        metavar="'NAME=PRICE/h'",
                        help="dollars an hour of a GPU model (each GPU), of a CPU model (a host "
                             "without GPUs) or of a configuration's label; repeatable")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--users", type=_users, help="the load to hold: concurrent users "
                        "(default: the highest any configuration held)")
    target.add_argument("--rate", type=_rate, help="the load to hold: requests per second")
    parser.add_argument("--markdown", type=Path, metavar="OUT.md",
                        help="write the comparison as markdown")
    parser.add_argument("--html", type=Path, metavar="OUT.html",
                        help="write it as one self-contained HTML file (charts embedded)")
    parser.add_argument("--chart-dir", type=Path, metavar="DIR",
                        help="where the Pareto charts go (default: next to --markdown, or to "
                             "--html)")


def run(args: argparse.Namespace) -> int:
    """The sub-command; 2 for input it cannot use (said on stderr, naming it)."""
    documents: list[tuple[str, RunDocument]] = []
    for path in args.runs:
        try:
            documents.append((label_of(path), load_run(path)))
        except StoreError as exc:
            print(f"python -m pytest_llmperf configs: error: {exc}", file=sys.stderr)
            return 2
    prices = Prices.parse(args.price)
    chart_dir = args.chart_dir
    if chart_dir is None:
        out = args.markdown or args.html
        chart_dir = out.parent if out is not None else None
    sources = [path.name for path in args.runs]
    # Several runs saved under one name are its history: the newest is compared.
    histories = history_of(documents, sources, chart_dir=chart_dir)
    newest, newest_sources = newest_of_each(documents, sources)
    comparisons = compare_configs(newest, prices=prices, users=args.users, rate=args.rate,
                                  chart_dir=chart_dir, sources=newest_sources)
    configs = [f.run.config for c in comparisons for _t, group in c.tests for f in group]
    for name in prices.unused(configs):
        print(f"python -m pytest_llmperf configs: warning: --price {name!r}: no configuration "
              f"has that GPU model, CPU model or label", file=sys.stderr)
    print(render_terminal(comparisons, prices), end="")
    if histories:
        print("\n" + history_terminal(histories), end="")
    try:
        if args.markdown is not None:
            args.markdown.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(args.markdown, render_markdown(
                comparisons, prices, relative_to=args.markdown.parent) + history_markdown(
                histories, relative_to=args.markdown.parent))
            print(f"markdown: {args.markdown}")
        if args.html is not None:
            from pytest_llmperf.configs.html import render_html

            args.html.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(args.html, render_html(comparisons, prices))
            print(f"html: {args.html}")
    except OSError as exc:
        print(f"python -m pytest_llmperf configs: error: cannot write {exc.filename}: "
              f"{exc.strerror}", file=sys.stderr)
        return 2
    return 0
