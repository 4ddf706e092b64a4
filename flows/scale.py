"""Where a flow's per-shard tasks run: threads in this process by default, or a Dask cluster.

``dask`` names the cluster: ``tcp://host:8786`` connects to a running scheduler (start one with
``dask scheduler`` and ``dask worker tcp://host:8786``), ``local:N`` starts a
``distributed.LocalCluster`` of N in-process workers for this run (processes=False: they share
this process's Prefect client, so no extra API server is needed). Per shard: filters and
MinHash signing. Whole-corpus steps (exact dedup, LSH clustering, selection, export) run once,
in the flow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NONE
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from curate.errors import CurateError
from curate.run.cluster import local_workers
from curate.stages.result import StageResult, concat_results


def task_runner(dask: str | None, threads: int = 2) -> TaskRunner:
    """The task runner for per-shard tasks (enter it with ``with``)."""
    if not dask:
        return ThreadPoolTaskRunner(max_workers=threads)
    from prefect_dask import DaskTaskRunner

    workers = local_workers(dask)
    if workers is not None:
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            # Dashboards on 127.0.0.1 only, like every other service curate starts.
            cluster_kwargs=dict(
                n_workers=workers,
                threads_per_worker=1,
                processes=False,
                dashboard_address="127.0.0.1:0",
                worker_dashboard_address="127.0.0.1:0",
            ),
        )
    return DaskTaskRunner(address=dask)


def shards(records: Any, rows: int) -> list[Any]:
    """Consecutive row slices of at most ``rows`` rows (zero-copy; at least one, maybe empty)."""
    if rows < 1:
        raise CurateError(f"shard_rows must be at least 1, not {rows}")
    return [records.slice(start, rows) for start in range(0, max(records.height, 1), rows)]


@task(cache_policy=NONE, persist_result=False)
def filter_shard(records: Any, use: str, params: dict[str, Any], name: str) -> StageResult:
    """One filter over one shard (imports here so Dask workers load the filter registry)."""
    from curate.stages.filter import run_filter
    from curate.stages.registry import get

    return run_filter(records, get("filter", use)(**params), name)


@task(cache_policy=NONE, persist_result=False)
def sign_shard(records: Any, params: Any) -> tuple[Any, Any]:
    """MinHash shingles and signatures of one shard's texts (the per-shard half of near dedup)."""
    from curate.dedup.near import sign_texts
    from curate.records.schema import TEXT

    return sign_texts(records[TEXT], params)


def sign_shards(runner: TaskRunner, records: Any, params: Any, rows: int) -> tuple[Any, Any]:
    """Signatures of all records, signed shard by shard on ``runner``; LSH clustering stays whole-corpus."""
    from curate.dedup.near import concat_signed

    futures = [runner.submit(sign_shard, {"records": part, "params": params}) for part in shards(records, rows)]
    return concat_signed([future.result() for future in futures])


def map_shards(
    runner: TaskRunner, stage: Callable[..., StageResult], records: Any, rows: int, **params: Any
) -> StageResult:
    """Run a per-shard stage task over every shard of ``records`` on ``runner``; one result."""
    futures = [runner.submit(stage, {"records": part, **params}) for part in shards(records, rows)]
    return concat_results([future.result() for future in futures])
