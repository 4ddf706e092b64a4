"""The ``curate-alpaca`` flow: Alpaca 52k (or any source) -> exact dedup -> near dedup -> filters
-> export.

Later stages (scoring, selection, card) join here as they land. The flow only wires
library calls into tasks; all logic lives in :mod:`curate`. Tasks hand each other frames in
memory (results are never persisted or hashed); filters map over shards of ``shard_rows``
records on local threads or, with ``dask``, on a Dask cluster (see :mod:`flows.scale`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams, add_to_index, near_duplicates
from curate.funnel import funnel_table, summary
from curate.ingest import IngestOptions
from curate.normalize import TextNormalization
from curate.pipeline import ExportOptions, RunWriter, UpToDate
from curate.recipe import load_recipe
from curate.run import RunDir
from flows.report import StageClock, publish
from flows.scale import filter_shard, map_shards, sign_shards, task_runner

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "curate" / "recipes" / "curate-alpaca.yaml"


def _network_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: a failed download, not bad input."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) or str(exc).startswith("cannot download")


@task(cache_policy=NONE, persist_result=False, retries=2, retry_delay_seconds=10, retry_condition_fn=_network_failure)
def ingest(writer: RunWriter, sources: list[str], options: IngestOptions):
    """Retried on a failed download of a registry source (downloads are verified and atomic)."""
    return writer.open_input(sources, options, progress=False)


@task(cache_policy=NONE, persist_result=False)
def exact_dedup(writer: RunWriter, records, params: ExactDedupParams):
    return writer.add(exact_duplicates(records, params))


@task(cache_policy=NONE, persist_result=False)
def near_dedup(writer: RunWriter, records, params: NearDedupParams, index: str | None, signed=None):
    """LSH clustering over the whole corpus, from signatures signed per shard (``signed``)."""
    from curate.dedup.index import open_index

    opened = open_index(index, params) if index else None
    result = near_duplicates(records, params, index=opened, signed=signed)
    kept = writer.add(result)
    if opened is not None:
        add_to_index(opened, result)
    get_run_logger().info("near_dup: %s", result.stats)
    return kept


def filter_stage(writer: RunWriter, records, use: str, params: dict[str, Any], name: str, runner, shard_rows: int):
    """A filter mapped over shards of the records (one task per shard), booked as one stage."""
    return writer.add(map_shards(runner, filter_shard, records, shard_rows, use=use, params=params, name=name))


@task(cache_policy=NONE, persist_result=False)
def card(out: str) -> str:
    from dataset_cards.card import write_card

    return str(write_card(out))


@task(cache_policy=NONE, persist_result=False)
def export(writer: RunWriter, kept) -> dict[str, Any]:
    return writer.finish(kept)


@flow(name="curate-alpaca", log_prints=True)
def curate_alpaca(
    sources: list[str] | None = None,
    out: str = "runs/curate-alpaca",
    unicode: str = "NFKC",
    casefold: bool = True,
    collapse_whitespace: bool = True,
    near_threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    bands: int | None = None,
    rows: int | None = None,
    keep: str = "first",
    near_index: str | None = None,
    max_shard_rows: int = 100_000,
    strict: bool = False,
    recipe: str | None = None,
    dask: str | None = None,
    shard_rows: int = 100_000,
) -> dict[str, Any]:
    """Curate an instruction dataset; returns the run's record counts, where it is and stage seconds.

    ``recipe`` (a YAML path) supplies the filters; the default is curate/recipes/curate-alpaca.yaml.
    ``dask`` runs the per-shard tasks on a Dask cluster (``tcp://host:8786`` or ``local:N``);
    neither it nor ``shard_rows`` changes a byte of the outputs.
    """
    logger = get_run_logger()
    steps = load_recipe(recipe or DEFAULT_RECIPE).filters
    sources = sources or ["alpaca"]
    options = IngestOptions(strict=strict)
    exact = ExactDedupParams(TextNormalization(unicode, casefold, collapse_whitespace))
    near = NearDedupParams(
        threshold=near_threshold,
        num_perm=num_perm,
        bands=bands,
        rows=rows,
        keep=keep,
        shingles=ShingleParams(ngram=ngram),
    )
    plan = {
        "input": sources,
        "ingest": options.params(),
        "exact": exact.as_dict(),
        "near": near.as_dict(),
        "index": near_index,
    }
    # Checkpoints after every stage: a run killed part-way resumes after its last finished stage.
    writer = RunWriter(out, "curate-alpaca", plan, ExportOptions(max_shard_rows=max_shard_rows), checkpoints=True)
    clock = StageClock()
    try:
        with clock("ingest"):
            records = ingest(writer, sources, options)
        with task_runner(dask) as runner:
            if not writer.skip("exact_dedup"):
                with clock("exact_dedup"):
                    records = exact_dedup(writer, records, exact)
            if not writer.skip("near_dup"):
                with clock("near_dup"):
                    signed = sign_shards(runner, records, near, shard_rows)
                    records = near_dedup(writer, records, near, near_index, signed)
            for step in steps:
                name = step.name or step.use
                if not writer.skip(name):
                    with clock(name):
                        records = filter_stage(writer, records, step.use, step.params, name, runner, shard_rows)
        with clock("export"):
            manifest = export(writer, records)
    except UpToDate:
        logger.info("%s is up to date; nothing to do", out)
        manifest = RunDir(out).manifest()
    with clock("card"):
        card_path = card(out)
    publish("curate-alpaca", manifest, out, card_path, clock.seconds)
    logger.info("funnel:\n%s", funnel_table(manifest))
    return {"run": out, **manifest["records"], "card": card_path, "seconds": clock.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the curate-alpaca flow locally.")
    parser.add_argument("sources", nargs="*", default=["alpaca"])
    parser.add_argument("--out", default="runs/curate-alpaca")
    parser.add_argument("--dask", help="run per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    parser.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task")
    args = parser.parse_args()
    result = curate_alpaca(sources=args.sources, out=args.out, dask=args.dask, shard_rows=args.shard_rows)
    print(summary(RunDir(args.out).manifest(), args.out))
    print(f"  card: {result['card']} (figures in {args.out}/figures/)")
    print("stage seconds: " + json.dumps(result["seconds"]))
    print(f"\ncurate-alpaca done: {result['kept']:,} of {result['in']:,} records kept")


if __name__ == "__main__":
    main()
