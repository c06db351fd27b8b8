"""Run every benchmark, print the tables and write JSON.

python -m benchmarks            # full run (minutes)
python -m benchmarks --quick    # smoke run (seconds), as in CI
python -m benchmarks hot_path herd   # some of them
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

import trio

from ._report import Section, as_json, render

ALL = (
    "hot_path",
    "herd",
    "fleet",
    "mass_expiry",
    "cross_node",
    "stores",
    "service",
    "warm_up",
)


def main() -> int:
    """Parse arguments, run the chosen benchmarks, report; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of: {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--json", type=Path, default=Path(__file__).parent / "results" / "latest.json"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(ALL))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    # The library logs refreshes; the benchmarks only want their tables.
    logging.getLogger("shoptoken").setLevel(logging.ERROR)
    sections: list[Section] = []
    for name in args.names or ALL:
        module = importlib.import_module(f"benchmarks.{name}")
        section: Section = trio.run(module.run, args.quick)
        sections.append(section)
        print(render(section), flush=True)
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(as_json(sections), indent=2) + "\n")
        print(f"wrote {args.json}")
    missed = [f.name for s in sections for f in s.figures if f.met is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    # A smoke run's small sizes say nothing about targets: it only must run.
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
