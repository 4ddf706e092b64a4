"""The ``curate-pretrain`` flow: pretraining corpora (JSONL, Parquet, text; many shards) ->
exact dedup -> near dedup -> language and quality heuristics -> PII -> export -> dataset card.

Records stream: sources are read file by file in batches into shards of ``shard_rows`` records
in the run's work area (:class:`curate.run.sharded.ShardedRun`), and every stage reads shards
and writes shards. The filters come from curate/recipes/curate-pretrain.yaml (language,
gopher_quality, c4_quality, pii with redaction) and map over the shards, on local threads or on
a Dask cluster (``dask``). Exact and near dedup need the whole corpus: above their out-of-core
thresholds they run through hash-partitioned work folders (bounded memory), below them in memory
(same result); with a running Dask scheduler (``dask=tcp://...``) their passes run on it too. A
killed run resumes at the source file, stage, shard or partition it was on.
"""

from __future__ import annotations

import argparse
import gc
import shlex
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from curate.dedup.exact import ExactDedupParams
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams
from curate.dedup.out_of_core import use_out_of_core
from curate.io.ingest import IngestOptions
from curate.recipes.recipe import load_recipe
from curate.records.normalize import TextNormalization
from curate.run.pipeline import ExportOptions, RunWriter, UpToDate
from curate.run.sharded import ShardedRun, read_shard
from flows.curate_alpaca import _network_failure, card
from flows.report import StageClock, close_run, plain_curate_errors, print_result
from flows.scale import filter_shard, sign_shards, task_runner

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "curate" / "recipes" / "curate-pretrain.yaml"


@task(cache_policy=NONE, persist_result=False, retries=2, retry_delay_seconds=10, retry_condition_fn=_network_failure)
def ingest_shards(sharded: ShardedRun, sources: list[str], options: IngestOptions) -> int:
    """Sources into shards (or a killed run's state back); retried on a failed download."""
    sharded.open(sources, options)
    return sharded.records


def scheduler(dask: str | None) -> str | None:
    """The address of a running Dask scheduler (``tcp://``) that runs the out-of-core dedup passes; None for
    ``local:N`` or no cluster: those passes then run in the flow process (a second LocalCluster beside the
    task runner's would only compete for cores)."""
    from curate.run.cluster import local_workers

    return dask if dask and local_workers(dask) is None else None


@task(cache_policy=NONE, persist_result=False)
def exact_dedup_shards(
    sharded: ShardedRun, params: ExactDedupParams, above: int | None, force, partitions: int, cluster: str | None
):
    """Out of core above ``above`` records (or as ``force`` says), its passes on ``cluster`` if any; else in memory."""
    if use_out_of_core(sharded.records, above, force=force):
        from curate.dedup.exact_out_of_core import exact_duplicates_out_of_core

        work = sharded.stage_dir("exact_dedup")
        done = exact_duplicates_out_of_core(sharded.shards, work, params, partitions, restart=True, dask=cluster)
        get_run_logger().info("exact_dedup (out of core): %s", done.stats)
        sharded.add_out_of_core("exact_dedup", done)
    else:
        from curate.dedup.exact import exact_duplicates

        sharded.add(exact_duplicates(sharded.whole(), params))


@task(cache_policy=NONE, persist_result=False)
def near_dedup_out_of_core_shards(
    sharded: ShardedRun, params: NearDedupParams, partitions: int, cluster: str | None = None
):
    """``cluster``: a running Dask scheduler (``tcp://``) that runs the passes' units as tasks."""
    from curate.dedup.out_of_core import near_duplicates_out_of_core

    work = sharded.stage_dir("near_dup")
    done = near_duplicates_out_of_core(sharded.shards, work, params, partitions, restart=True, dask=cluster)
    get_run_logger().info("near_dup (out of core): %s", done.stats)
    sharded.add_out_of_core("near_dup", done)


@task(cache_policy=NONE, persist_result=False)
def near_dedup_whole(sharded: ShardedRun, records, params: NearDedupParams, index: str | None, signed):
    """LSH clustering over the whole corpus in memory, from signatures signed per shard (``signed``)."""
    from curate.dedup.index import open_index
    from curate.dedup.near import add_to_index, near_duplicates

    opened = open_index(index, params) if index else None
    result = near_duplicates(records, params, index=opened, signed=signed)
    sharded.add(result)
    if opened is not None:
        add_to_index(opened, result)
    get_run_logger().info("near_dup: %s", result.stats)


def near_dedup_shards(
    sharded: ShardedRun, params: NearDedupParams, index, above, force, partitions, runner, dask: str | None
) -> None:
    """Out of core above ``above`` records (or as ``force`` says; never with an index), else in memory.
    Out of core, its passes run on the :func:`scheduler` of ``dask`` when there is one."""
    if use_out_of_core(sharded.records, above, index, force=force if index is None else None):
        near_dedup_out_of_core_shards(sharded, params, partitions, scheduler(dask))
    else:
        records = sharded.whole()
        near_dedup_whole(sharded, records, params, index, sign_shards(runner, records, params, sharded.shard_rows))


def filter_shards(sharded: ShardedRun, runner, use: str, params: dict[str, Any], name: str, in_flight: int) -> None:
    """A filter over every shard not done yet, ``in_flight`` at a time (what bounds its memory), booked as one stage."""
    pending = sharded.pending(name)
    finished = len(sharded.shards) - len(pending)
    if finished:
        get_run_logger().info("%s: resuming, %d of %d shards already done", name, finished, len(sharded.shards))
    for start in range(0, len(pending), in_flight):
        batch = pending[start : start + in_flight]
        task_params = {"use": use, "params": params, "name": name}
        futures = [(i, runner.submit(filter_shard, {"records": read_shard(p), **task_params})) for i, p in batch]
        for index, future in futures:
            sharded.save_shard(name, index, future.result())
        # Prefect's futures and states hold the shards' frames in reference cycles, which Python's
        # collector (counting objects, not bytes) reaches late: measured, RSS grew by a shard a task.
        del futures
        gc.collect()
    sharded.close_stage(name)


@task(cache_policy=NONE, persist_result=False)
def export_shards(sharded: ShardedRun) -> dict[str, Any]:
    return sharded.finish()


@flow(name="curate-pretrain", log_prints=True)
def curate_pretrain(
    sources: list[str],
    out: str = "runs/curate-pretrain",
    format: str | None = None,
    text_field: str | None = None,
    delimiter: str | None = None,
    near_threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    near_index: str | None = None,
    max_shard_rows: int = 100_000,
    strict: bool = False,
    recipe: str | None = None,
    dask: str | None = None,
    shard_rows: int = 100_000,
    overwrite: bool = False,
    near_out_of_core_above: int | None = 1_000_000,
    exact_out_of_core_above: int | None = 1_000_000,
    out_of_core: bool | None = None,
    partitions: int = 16,
    shards_in_flight: int = 2,
) -> dict[str, Any]:
    """Curate pretraining text; returns the run's record counts, where it is and stage seconds.

    ``sources``: files, folders of shards or registry names. ``text_field`` reads that field of
    JSONL/Parquet rows as the text; ``delimiter`` splits plain-text files on lines equal to it.
    Exact and near dedup run out of core (same result, bounded memory) above
    ``exact_out_of_core_above`` and ``near_out_of_core_above`` records (None: never), or always
    (``out_of_core=True``) or never (``False``), over ``partitions`` hash partitions. Each filter
    has ``shards_in_flight`` shards on the task runner at a time (raise it to the worker count of
    a Dask cluster); a process then holds about that many shards of ``shard_rows`` records.
    """
    plain_curate_errors()
    spec = load_recipe(recipe or DEFAULT_RECIPE)
    options = IngestOptions(format=format, text_field=text_field, delimiter=delimiter, strict=strict)
    exact_spec = spec.dedup.exact if spec.dedup and spec.dedup.exact else None
    exact = ExactDedupParams(
        TextNormalization(**exact_spec.model_dump()) if exact_spec else TextNormalization("NFKC", True, True)
    )
    near = NearDedupParams(threshold=near_threshold, num_perm=num_perm, shingles=ShingleParams(ngram=ngram))
    plan = {
        "input": sources,
        "ingest": options.params(),
        "exact": exact.as_dict(),
        "near": near.as_dict(),
        "index": near_index,
        "filters": [step.model_dump() for step in spec.filters],
    }
    export_options = ExportOptions(max_shard_rows=max_shard_rows)
    invocation = shlex.join(
        ["curate", "run", "curate-pretrain", *sources, "--out", str(out)]
        + (["--recipe", recipe] if recipe else [])
        + (["--text-field", text_field] if text_field else [])
    )
    writer = RunWriter(out, "curate-pretrain", plan, export_options, invocation, overwrite=overwrite, publish=False)
    sharded = ShardedRun(writer, shard_rows)
    clock = StageClock()
    try:
        with clock("ingest"):
            ingest_shards(sharded, sources, options)
        with task_runner(dask) as runner:
            if not sharded.skip("exact_dedup"):
                with clock("exact_dedup"):
                    exact_dedup_shards(
                        sharded, exact, exact_out_of_core_above, out_of_core, partitions, scheduler(dask)
                    )
            if not sharded.skip("near_dup"):
                with clock("near_dup"):
                    near_dedup_shards(
                        sharded, near, near_index, near_out_of_core_above, out_of_core, partitions, runner, dask
                    )
            for step in spec.filters:
                name = step.name or step.use
                if not sharded.skip(name):
                    with clock(name):
                        filter_shards(sharded, runner, step.use, step.params, name, shards_in_flight)
        with clock("export"):
            manifest = export_shards(sharded)
    except UpToDate:
        manifest = None
    return close_run("curate-pretrain", manifest, writer.run, out, clock, card)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the curate-pretrain flow locally.")
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--out", default="runs/curate-pretrain")
    parser.add_argument("--text-field")
    parser.add_argument("--delimiter")
    parser.add_argument("--recipe", help="recipe YAML (default curate/recipes/curate-pretrain.yaml)")
    parser.add_argument("--dask", help="run per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    parser.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task")
    parser.add_argument("--out-of-core", dest="out_of_core", action="store_const", const=True, default=None)
    parser.add_argument("--in-memory", dest="out_of_core", action="store_const", const=False)
    parser.add_argument("--out-of-core-above", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--partitions", type=int, default=16, help="out-of-core hash partitions")
    args = parser.parse_args()
    from flows.temporary_server import PRETRAIN_IMPORTS, temporary_server

    with temporary_server(PRETRAIN_IMPORTS):
        result = curate_pretrain(
            sources=args.sources,
            out=args.out,
            text_field=args.text_field,
            delimiter=args.delimiter,
            recipe=args.recipe,
            dask=args.dask,
            shard_rows=args.shard_rows,
            out_of_core=args.out_of_core,
            exact_out_of_core_above=args.out_of_core_above,
            near_out_of_core_above=args.out_of_core_above,
            partitions=args.partitions,
        )
    print_result(result)


if __name__ == "__main__":
    main()
