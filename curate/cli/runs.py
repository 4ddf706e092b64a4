"""``curate run`` and ``curate serve``: the one place the CLI reaches ``flows/``.

Flows are imported lazily here and nowhere else in ``curate``; a test over the import graph keeps it so."""

from __future__ import annotations

import argparse

from curate.cli.options import out_of_core_options, storage_option, usage


def cmd_run(args: argparse.Namespace) -> None:
    import os

    # Prefect's ephemeral server gets 20 s to start by default; a busy 2-core machine needs more.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    out = args.out or f"runs/{args.flow}"
    if args.flow == "curate-pretrain" and not args.sources:
        raise usage("curate-pretrain needs at least one SOURCE (files, folders of shards or registry names)")
    _check_storage(args.sources, out)
    from flows.temporary_server import PRETRAIN_IMPORTS, WARM_IMPORTS, temporary_server

    with temporary_server(PRETRAIN_IMPORTS if args.flow == "curate-pretrain" else WARM_IMPORTS):
        result = _run_flow(args, out)
    _print_summary(out, result)


def _run_flow(args: argparse.Namespace, out: str) -> dict:
    scale = {"dask": args.dask, "shard_rows": args.shard_rows, "overwrite": args.overwrite}
    if args.flow == "curate-pretrain":
        from flows.curate_pretrain import curate_pretrain

        out_of_core = {
            "out_of_core": args.out_of_core,
            "exact_out_of_core_above": args.out_of_core_above,
            "near_out_of_core_above": args.out_of_core_above,
            "partitions": args.partitions,
        }
        result = curate_pretrain(
            sources=args.sources, out=out, recipe=args.recipe, text_field=args.text_field, **scale, **out_of_core
        )
    else:
        from flows.curate_alpaca import curate_alpaca

        sources = args.sources or ["alpaca"]
        result = curate_alpaca(sources=sources, out=out, recipe=args.recipe, keep_n=args.keep, **scale)
    return result


def _print_summary(out: str, result: dict) -> None:
    from curate.run.directory import RunDir
    from curate.run.funnel import summary, warnings

    run = RunDir(out)
    manifest = run.manifest()
    print(summary(manifest, out))
    print(f"  card: {result['card']} (figures in {out}/figures/)")
    for name, path in manifest.get("selections", {}).items():
        side = RunDir(run.root / path).manifest()  # a run at a URL: its staged copy, selections included
        print(f"  selection {name}: {side['records']['kept']:,} records in {out.rstrip('/')}/{path}/data/")
        for line in warnings(side, name):
            print(line)
    print("  stage seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result["seconds"].items()))


def _check_storage(sources: list[str], out: str) -> None:
    """A bad s3:// source or --out fails with one line now, not after Prefect has started."""
    from curate.io import storage
    from curate.io.ingest import IngestOptions, resolve_source
    from curate.run.directory import RunDir

    for spec in sources:
        if storage.is_url(spec) and not RunDir.is_run(spec):
            resolve_source(spec, IngestOptions())
    if storage.is_remote(out):
        storage.remote_run(out).claim()


def cmd_serve(args: argparse.Namespace) -> None:
    from flows.serve import serve

    raise SystemExit(serve(args.port))


def register(sub) -> None:
    p = sub.add_parser("run", help="run a flow in Prefect's ephemeral mode, no server needed")
    p.add_argument("flow", choices=["curate-alpaca", "curate-pretrain"])
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="input (curate-alpaca default: alpaca)")
    p.add_argument("--out", help="run directory (default runs/FLOW)")
    p.add_argument("--overwrite", action="store_true", help="replace a curate run of other inputs or parameters")
    p.add_argument("--recipe", metavar="YAML", help="recipe (default curate/recipes/FLOW.yaml)")
    p.add_argument("--keep", type=int, help="curate-alpaca: records the main selection keeps (recipe default 9000)")
    p.add_argument("--text-field", help="curate-pretrain: the field of JSONL/Parquet rows that holds the text")
    p.add_argument("--dask", metavar="ADDRESS", help="per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    p.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task (default 100000)")
    storage_option(p)
    out_of_core_options(p, "curate-pretrain: ")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("serve", help="local Prefect server + deployments + worker (Ctrl-C stops all)")
    p.add_argument("--port", type=int, default=4200, help="port of the server on 127.0.0.1")
    p.set_defaults(func=cmd_serve)
