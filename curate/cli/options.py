"""Flags and the skeleton every stage command shares: read INPUT, write a run, print a summary."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

EXIT_ERROR = 2


def input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("reading sources (when INPUT is not a run directory)")
    group.add_argument("--format", help="alpaca, dolly, seed-tasks, lima, sharegpt or text (default: detect)")
    group.add_argument("--text-field", help="read this field as pretraining text")
    group.add_argument("--id-field", help="take source_id from this field")
    group.add_argument("--delimiter", metavar="LINE", help="split text files on lines equal to LINE, e.g. ------")
    group.add_argument("--strict", action="store_true", help="stop at the first bad row, naming file and line")
    group.add_argument("--max-chars", type=int, default=None, help="reject records longer than this")
    group.add_argument("--source-name", help="the source column for path inputs")
    group.add_argument("--license", help="the license column for path inputs")
    storage_option(group)


def storage_option(parser: Any) -> None:
    parser.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec option for s3:// (or other URL) sources and runs, e.g. endpoint_url=http://127.0.0.1:9000",
    )


def out_of_core_options(parser: Any, prefix: str = "") -> None:
    """``--out-of-core``/``--in-memory``/``--out-of-core-above N``/``--partitions`` for exact and near dedup
    (``curate dedup`` and ``curate run curate-pretrain``: one rule, ``curate.dedup.out_of_core.use_out_of_core``)."""
    parser.add_argument(
        "--out-of-core",
        dest="out_of_core",
        action="store_const",
        const=True,
        default=None,
        help=f"{prefix}exact and near dedup through a work folder on disk (default: above --out-of-core-above records)",
    )
    parser.add_argument(
        "--in-memory",
        dest="out_of_core",
        action="store_const",
        const=False,
        help=f"{prefix}exact and near dedup in memory",
    )
    parser.add_argument(
        "--out-of-core-above",
        type=int,
        default=1_000_000,
        metavar="N",
        help=f"{prefix}records above which exact and near dedup run out of core (1000000)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=16,
        help=f"{prefix}out-of-core hash partitions of the content and LSH keys (16)",
    )


def export_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="RUN", help="run directory to write")
    parser.add_argument("--max-shard-rows", type=int, default=100_000, help="rows per Parquet shard at most")
    parser.add_argument("--overwrite", action="store_true", help="replace a curate run of other inputs or parameters")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def ingest_options(args: argparse.Namespace):
    from curate.io.ingest import DEFAULT_MAX_CHARS, IngestOptions

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


def run_writer(args: argparse.Namespace, command: str, plan: dict):
    import shlex

    from curate.run.pipeline import ExportOptions, RunWriter

    invocation = shlex.join(["curate", *sys.argv[1:]])
    export = ExportOptions(max_shard_rows=args.max_shard_rows)
    # publish=False: done() writes the card, then uploads a run staged for a URL (manifest last).
    return RunWriter(args.out, command, plan, export, invocation, overwrite=args.overwrite, publish=False)


def start(args: argparse.Namespace, command: str, plan: dict):
    """The writer and the input records of a stage command, or None when OUT is already up to date."""
    from curate.run.pipeline import UpToDate

    options = ingest_options(args)
    writer = run_writer(args, command, {"input": args.input, "ingest": options.params(), **plan})
    try:
        return writer, writer.open_input(args.input, options, progress=not args.quiet)
    except UpToDate:
        up_to_date(args.out)
        return None


def done(manifest: dict, out: str) -> None:
    """Write the card of the run just committed at ``out`` and publish it (a run at a URL: manifest last)."""
    from curate.io.storage import is_remote
    from curate.run.directory import RunDir
    from curate.run.funnel import summary
    from dataset_cards.card import write_card

    # The writer's view: a run at a URL is committed in its staged copy, not uploaded yet. No figures:
    # drawing them takes longer than a fast stage (`curate card` draws them).
    card = write_card(RunDir(out, writer=True), draw=False)
    card = f"{out}/README.md" if is_remote(out) else card  # a staged run's card is uploaded with it
    print(summary(manifest, out))
    print(f"  card: {card} (figures: curate card {out})")


def up_to_date(out: str) -> None:
    from curate.run.directory import RunDir
    from curate.run.funnel import summary

    print(f"{out} is up to date (same command and inputs); nothing to do.")
    print(summary(RunDir(out).manifest(), out))


class UsageError(Exception):
    pass


def usage(message: str) -> UsageError:
    return UsageError(message)


def stage_parser(
    sub: Any, name: str, helptext: str, func: Callable[[argparse.Namespace], None], positional: str = "input"
) -> argparse.ArgumentParser:
    """A subcommand that reads INPUT (a run or sources) and writes a run; its own flags go between."""
    p = sub.add_parser(name, help=helptext)
    if positional == "input":
        p.add_argument("input", nargs="+", metavar="INPUT", help="a run directory, or sources as for ingest")
    else:
        p.add_argument("sources", nargs="+", metavar="SOURCE", help="a registry name (e.g. alpaca) or a path")
    p.set_defaults(func=func)
    return p


def finish_stage_parser(p: argparse.ArgumentParser) -> None:
    export_options(p)
    input_options(p)


def embedding_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding")
    g.add_argument(
        "--model",
        "--embedder",
        dest="model",
        help="sentence-transformers model name or path (default: bundled all-MiniLM-L6-v2)",
    )
    g.add_argument("--field", default="text", help="record column to embed (default text)")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    g.add_argument("--max-length", type=int, help="truncate to this many tokens (default: the model's)")
    g.add_argument("--batch-size", type=int, help="texts per batch (16 on CPU, 256 on CUDA)")
    g.add_argument("--cache", metavar="DIR", help="embedding cache (default ~/.cache/curate/embeddings)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")


def embedder_from(args: argparse.Namespace):
    from curate.embed.encoder import Embedder, EmbeddingCache, EmbedSettings

    embedder = Embedder(
        EmbedSettings(
            model=args.model,
            device=args.device,
            precision=args.precision,
            max_length=args.max_length,
            batch_size=args.batch_size,
        )
    )
    cache = None
    if not args.no_cache:
        cache = EmbeddingCache(args.cache or EmbeddingCache.default_root(), embedder.key(), embedder.dimension)
    return embedder, cache


def endpoint_options(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_argument_group("OpenAI-compatible endpoint")
    g.add_argument("--base-url", required=required, help="e.g. http://127.0.0.1:8000/v1 (see `curate serve-lm`)")
    g.add_argument("--model", required=required, help="model name sent to the endpoint")
    g.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key (never stored)")
    g.add_argument("--concurrency", type=int, default=4, help="requests in flight at most (4)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per request (120)")
    g.add_argument("--retries", type=int, default=5, help="retries on 429, 5xx, timeouts, bad replies (5)")
    g.add_argument("--cache", metavar="DIR", help="reply cache (default $CURATE_CHAT_CACHE or ~/.cache/curate/chat)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the reply cache")
    g.add_argument("--price-in", type=float, help="dollars per 1M prompt tokens, for the cost line")
    g.add_argument("--price-out", type=float, help="dollars per 1M completion tokens")


def chat_settings(args: argparse.Namespace):
    from curate.llm.chat import ChatSettings

    return ChatSettings(
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        cache_dir=args.cache,
        use_cache=not args.no_cache,
        price_in=args.price_in,
        price_out=args.price_out,
    )
