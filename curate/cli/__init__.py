"""The ``curate`` command. Thin: parse, call the library, print a summary.

One module a command group; heavy libraries load inside the subcommands, so ``curate --help``
answers at once. Only :mod:`curate.cli.runs` reaches ``flows/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from curate.cli import dedup, filters, llm, quality, records, runs, train
from curate.cli.options import EXIT_ERROR, UsageError

GROUPS = (records, dedup, filters, quality, llm, train, runs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curate",
        description="Data-centric dataset curation: ingest, deduplicate, filter, score, select, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


# Flags whose value may itself start with "-" (a delimiter line such as ------): argparse would read the
# value as an option, so "--delimiter ------" is joined into "--delimiter=------" before parsing.
DASH_VALUED = ("--delimiter",)


def join_dash_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        if items[i] in DASH_VALUED and i + 1 < len(items) and items[i + 1].startswith("-"):
            out.append(f"{items[i]}={items[i + 1]}")
            i += 2
            continue
        out.append(items[i])
        i += 1
    return out


def main(argv: Sequence[str] | None = None, run: Callable[[argparse.Namespace], None] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_dash_values(sys.argv[1:] if argv is None else argv))
    try:
        if getattr(args, "storage_option", None):
            from curate.io.storage import configure

            configure(args.storage_option)
        (run or args.func)(args)
    except UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from curate.errors import CurateError

        if isinstance(exc, CurateError | ValueError | OSError):
            print(f"curate: error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        raise
    return 0
