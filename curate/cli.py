"""The ``curate`` command. Thin: parse, call the library, print a summary.

Heavy libraries load inside the subcommands, so ``curate --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_ERROR = 2


def _input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading sources (when INPUT is not a run directory)")
    group.add_argument("--format", help="alpaca, dolly, seed-tasks, lima, sharegpt or text (default: detect)")
    group.add_argument("--text-field", help="read this field as pretraining text")
    group.add_argument("--id-field", help="take source_id from this field")
    group.add_argument("--delimiter", metavar="LINE", help="split text files on lines equal to LINE, e.g. ------")
    group.add_argument("--strict", action="store_true", help="stop at the first bad row, naming file and line")
    group.add_argument("--max-chars", type=int, default=None, help="reject records longer than this")
    group.add_argument("--source-name", help="the source column for path inputs")
    group.add_argument("--license", help="the license column for path inputs")


def _export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    parser.add_argument("--max-shard-rows", type=int, default=100_000, help="rows per Parquet shard at most")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def _ingest_options(args: argparse.Namespace):
    from curate.ingest import DEFAULT_MAX_CHARS, IngestOptions

    return IngestOptions(
        format=args.format,
        text_field=args.text_field,
        id_field=args.id_field,
        delimiter=args.delimiter,
        strict=args.strict,
        max_chars=args.max_chars or DEFAULT_MAX_CHARS,
        source=args.source_name,
        license=args.license,
    )


def _writer(args: argparse.Namespace, command: str, plan: dict):
    from curate.pipeline import ExportOptions, RunWriter

    return RunWriter(args.out, command, plan, ExportOptions(max_shard_rows=args.max_shard_rows))


def _done(manifest: dict, out: str) -> None:
    from curate.funnel import summary

    print(summary(manifest, out))


def _up_to_date(out: str) -> None:
    from curate.funnel import summary
    from curate.run import RunDir

    print(f"{out} is up to date (same command and inputs); nothing to do.")
    print(summary(RunDir(out).manifest(), out))


def cmd_ingest(args: argparse.Namespace) -> None:
    from curate.pipeline import UpToDate

    options = _ingest_options(args)
    writer = _writer(args, "ingest", {"sources": args.sources, "ingest": options.params()})
    try:
        writer.ingest_streaming(args.sources, options, progress=not args.quiet)
    except UpToDate:
        return _up_to_date(args.out)
    _done(writer.manifest, args.out)


def cmd_dedup(args: argparse.Namespace) -> None:
    from curate.dedup.exact import ExactDedupParams, exact_duplicates
    from curate.normalize import TextNormalization
    from curate.pipeline import UpToDate

    if not args.exact:
        raise _usage("choose a dedup method: --exact (MinHash near-dedup arrives with --near)")
    params = ExactDedupParams(
        TextNormalization(
            unicode=args.unicode, casefold=not args.keep_case, collapse_whitespace=not args.keep_whitespace
        )
    )
    options = _ingest_options(args)
    writer = _writer(args, "dedup", {"input": args.input, "ingest": options.params(), "exact": params.as_dict()})
    try:
        records = writer.open_input(args.input, options, progress=not args.quiet)
    except UpToDate:
        return _up_to_date(args.out)
    kept = writer.add(exact_duplicates(records, params))
    _done(writer.finish(kept), args.out)


def cmd_export(args: argparse.Namespace) -> None:
    from curate.pipeline import UpToDate

    options = _ingest_options(args)
    writer = _writer(args, "export", {"input": args.input, "ingest": options.params()})
    try:
        records = writer.open_input(args.input, options, progress=not args.quiet)
    except UpToDate:
        return _up_to_date(args.out)
    _done(writer.finish(records), args.out)


def cmd_inspect(args: argparse.Namespace) -> None:
    import json

    from curate.funnel import funnel_rows, funnel_table
    from curate.run import RunDir

    run = RunDir(args.run)
    manifest = run.manifest()
    if args.json:
        print(json.dumps({"run": args.run, "records": manifest["records"], "funnel": funnel_rows(manifest)}, indent=2))
        return
    print(funnel_table(manifest, markdown=args.markdown))
    records = manifest["records"]
    print(
        f"\n{records['in']:,} in, {records['kept']:,} kept, {records['rejected']:,} rejected; "
        f"{len(manifest['outputs']['data'])} shard(s) in {args.run}/data/"
    )
    problems = run.verify()
    if problems:
        print("integrity problems:\n  " + "\n  ".join(problems))
        raise SystemExit(1)


def cmd_datasets(args: argparse.Namespace) -> None:
    from curate import catalog

    for name, ds in sorted(catalog.registry().items()):
        print(f"{name:26} {ds.records or '?':>7} records  {ds.license:16} {ds.file}")


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curate",
        description="Data-centric dataset curation: ingest, deduplicate, filter, score, select, export.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="read sources into a run directory (streaming)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="a registry name (e.g. alpaca) or a path")
    _export_options(p)
    _input_options(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("dedup", help="remove duplicates")
    p.add_argument("input", nargs="+", metavar="INPUT", help="a run directory, or sources as for ingest")
    p.add_argument("--exact", action="store_true", help="exact dedup on normalized content")
    p.add_argument("--unicode", default="NFKC", help="Unicode normalization before comparing (or none)")
    p.add_argument("--keep-case", action="store_true", help="compare case-sensitively")
    p.add_argument("--keep-whitespace", action="store_true", help="do not collapse whitespace")
    _export_options(p)
    _input_options(p)
    p.set_defaults(func=cmd_dedup)

    p = sub.add_parser("export", help="write the kept records as Parquet shards")
    p.add_argument("input", nargs="+", metavar="INPUT", help="a run directory, or sources as for ingest")
    _export_options(p)
    _input_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="the funnel of a run: stage, in, kept, rejected by reason")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("datasets", help="list the dataset registry")
    p.set_defaults(func=cmd_datasets)
    return parser


def main(argv: Sequence[str] | None = None, run: Callable[[argparse.Namespace], None] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        (run or args.func)(args)
    except _UsageError as exc:
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


if __name__ == "__main__":
    raise SystemExit(main())
