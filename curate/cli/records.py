"""Commands that read sources into a run and look at runs: ingest, export, inspect, card, datasets."""

from __future__ import annotations

import argparse

from curate.cli.options import done, finish_stage_parser, ingest_options, run_writer, stage_parser, start, up_to_date


def cmd_ingest(args: argparse.Namespace) -> None:
    from curate.run.pipeline import UpToDate

    options = ingest_options(args)
    writer = run_writer(args, "ingest", {"sources": args.sources, "ingest": options.params()})
    try:
        writer.ingest_streaming(args.sources, options, progress=not args.quiet)
    except UpToDate:
        return up_to_date(args.out)
    done(writer.manifest, args.out)


def cmd_export(args: argparse.Namespace) -> None:

    started = start(args, "export", {})
    if started is None:
        return
    writer, records = started
    done(writer.finish(records), args.out)


def cmd_inspect(args: argparse.Namespace) -> None:
    import json

    from curate.run.directory import RunDir
    from curate.run.funnel import funnel_rows, funnel_table

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


def cmd_card(args: argparse.Namespace) -> None:
    from dataset_cards.card import write_card

    card = write_card(args.run)
    print(f"wrote {card} and {args.run}/figures/")


def cmd_datasets(args: argparse.Namespace) -> None:
    from curate.io import catalog

    for name, ds in sorted(catalog.registry().items()):
        print(f"{name:26} {ds.records or '?':>7} records  {ds.license:16} {ds.file}")


def register(sub) -> None:
    p = stage_parser(sub, "ingest", "read sources into a run directory (streaming)", cmd_ingest, "sources")
    finish_stage_parser(p)

    finish_stage_parser(stage_parser(sub, "export", "write the kept records as Parquet shards", cmd_export))

    p = sub.add_parser("inspect", help="the funnel of a run: stage, in, kept, rejected by reason")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--markdown", action="store_true", help="a markdown table")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("card", help="(re)write the run's dataset card, RUN/README.md, and its figures")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("datasets", help="list the dataset registry")
    p.set_defaults(func=cmd_datasets)
