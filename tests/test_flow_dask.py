"""Scale-out: curate-alpaca's per-shard tasks on a real two-worker Dask LocalCluster give the
same bytes as the default local run."""

from __future__ import annotations

import json
from pathlib import Path

from distributed import LocalCluster
from prefect.testing.utilities import prefect_test_harness

from flows.curate_alpaca import curate_alpaca


def outputs(run: Path) -> dict[str, str]:
    manifest = json.loads((run / "manifest.json").read_text())
    files = [e for group in ("data", "rejects", "annotations") for e in manifest["outputs"][group]]
    return {e["path"]: e["sha256"] for e in files} | {"fingerprint": manifest["fingerprint"]}


def test_dask_cluster_run_equals_local_run_byte_for_byte(tmp_path: Path, data_dir: Path) -> None:
    # Two in-process workers (processes=False): they share the test's Prefect API, and spawning
    # worker processes would cost more than this small run; the tasks still go through Dask.
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with prefect_test_harness(server_startup_timeout=120), cluster:
        local = curate_alpaca(sources=["alpaca-seed-tasks"], out=str(tmp_path / "local"))
        scaled = curate_alpaca(
            sources=["alpaca-seed-tasks"], out=str(tmp_path / "dask"), dask=cluster.scheduler_address, shard_rows=40
        )
        executed = [worker.state.executed_count for worker in cluster.workers.values()]
    assert local["kept"] == scaled["kept"] and local["in"] == 175
    assert outputs(tmp_path / "local") == outputs(tmp_path / "dask")
    for group in ("data", "rejects", "annotations"):
        for path in (tmp_path / "local" / group).glob("*.parquet"):
            assert path.read_bytes() == (tmp_path / "dask" / group / path.name).read_bytes(), path.name
    assert len(executed) == 2 and all(count > 0 for count in executed), executed  # both workers ran shards
