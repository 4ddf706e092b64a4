"""Out-of-core near dedup: the same kept records, rejects and annotations as the in-memory stage,
resuming a killed run, bad shards, and the passes as tasks on a real Dask cluster (same bytes)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.dedup.near import NearDedupParams, near_duplicates
from curate.dedup.out_of_core import frame_shards, near_duplicates_out_of_core
from curate.dedup.planted import planted_records
from curate.errors import CurateError
from curate.records.schema import KIND_TEXT, conform
from curate.stages.result import StageResult
from tests import out_of_core_checks
from tests.conftest import ingested, run_cli
from tests.out_of_core_checks import assert_same_records

SHARD_ROWS = 900
PARTITIONS = 3


@pytest.fixture(scope="module")
def corpus(data_dir: Path) -> pl.DataFrame:
    """Alpaca records, the planted-dedup-dev set, and a giant bucket (one text, 90 one-word
    edits and 5 exact copies), shuffled so that duplicates fall in different shards."""
    alpaca = ingested("alpaca").head(3000)
    planted = planted_records(pl.read_parquet(data_dir / "dedup" / "planted_dev.parquet"))
    base = max(alpaca["text"].to_list(), key=lambda t: (len(t.split()), t))
    words = base.split()
    giant = [base] * 5
    for i in range(90):
        edited = list(words)
        edited[(i * 7) % len(edited)] = f"edit{i}"
        giant.append(" ".join(edited))
    ids = [f"g{i:03d}" for i in range(len(giant))]
    extra = conform(
        pl.DataFrame(
            {"id": ids, "source": ["giant"] * len(ids), "source_id": ids, "kind": [KIND_TEXT] * len(ids)}
        ).with_columns(pl.Series("text", giant))
    )
    frame = pl.concat([conform(alpaca), planted, extra], how="vertical_relaxed")
    order = np.random.default_rng(7).permutation(frame.height)
    return frame[order]


def scores_of(frame: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(3)
    values = rng.random(frame.height)
    values[rng.choice(frame.height, 50, replace=False)] = np.nan
    return pl.DataFrame({"id": frame["id"], "quality": values}).with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 0).then(None).otherwise(pl.col("quality")).alias("quality")
    )


def parquet_shards(frame: pl.DataFrame, folder: Path) -> list[Path]:
    return out_of_core_checks.parquet_shards(frame, folder, SHARD_ROWS)


def assert_identical(memory: StageResult, out_of_core: StageResult) -> None:
    assert_same_records(memory, out_of_core)

    def without_ooc(stats: dict) -> dict:
        return {k: v for k, v in stats.items() if k != "out_of_core"}

    assert without_ooc(out_of_core.stats) == without_ooc(memory.stats)


@pytest.mark.parametrize(
    "case",
    [
        "default-parquet",
        "longest-cap8",
        "score",
        "estimate",
    ],
)
def test_identical_to_in_memory(case: str, corpus: pl.DataFrame, tmp_path: Path) -> None:
    scores = None
    if case == "default-parquet":
        params = NearDedupParams()
    elif case == "longest-cap8":
        params = NearDedupParams(threshold=0.7, keep="longest", max_partners=8)
    elif case == "score":
        params, scores = NearDedupParams(keep="score:quality"), scores_of(corpus)
    else:
        params = NearDedupParams(verify="estimate", threshold=0.75)
    memory = near_duplicates(corpus, params, scores=scores)
    shards = parquet_shards(corpus, tmp_path / "in") if case == "default-parquet" else frame_shards(corpus, SHARD_ROWS)
    done = near_duplicates_out_of_core(shards, tmp_path / "work", params, PARTITIONS, scores)
    assert done.n_in == done.kept + done.rejected == corpus.height
    assert_identical(memory, done.to_stage_result())
    # The cases are not trivial: many duplicates, and a bucket far beyond the partner cap.
    assert memory.rejects.height > 150
    assert memory.stats["largest_clusters"][0]["size"] > 64
    assert done.stats["out_of_core"]["shards"] == -(-corpus.height // SHARD_ROWS)


def test_resume_after_a_kill(corpus: pl.DataFrame, tmp_path: Path) -> None:
    params = NearDedupParams()
    shards = parquet_shards(corpus, tmp_path / "in")
    work = tmp_path / "work"
    first = near_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert first.stats["out_of_core"]["ran"]["sign"] == len(shards)
    expected = first.to_stage_result()
    signed = {p: p.stat().st_mtime_ns for p in work.glob("sign/*/signatures.npy")}
    assert len(signed) == len(shards)

    # A kill in the candidates pass of partition 1 and while writing shard 2's output.
    (work / "candidates" / "00001" / "DONE").unlink()
    (work / "output" / "00002" / "DONE").unlink()
    (work / "output" / "00002" / ".tmp-4242-kept.parquet").write_bytes(b"PAR1 half a file")
    (work / "verify" / "00000" / ".tmp-4242-edges.ipc").write_bytes(b"half")
    again = near_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert again.stats["out_of_core"]["ran"] == {"candidates": 1, "output": 1}
    assert {p: p.stat().st_mtime_ns for p in work.glob("sign/*/signatures.npy")} == signed
    assert not list(work.rglob(".tmp-*"))
    assert_identical(expected, again.to_stage_result())

    # A shard that changed is signed again (only it), and the later passes are redone.
    changed = pl.read_parquet(shards[1]).with_columns(pl.col("text").str.to_uppercase())
    os.utime(shards[1], ns=(0, 0))
    changed.write_parquet(shards[1])
    third = near_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert third.stats["out_of_core"]["ran"]["sign"] == 1
    whole = pl.concat([pl.read_parquet(p) for p in shards])
    assert_identical(near_duplicates(whole, params), third.to_stage_result())

    other = NearDedupParams(threshold=0.7)
    with pytest.raises(CurateError, match="other settings"):
        near_duplicates_out_of_core(shards, work, other, PARTITIONS)
    restarted = near_duplicates_out_of_core(shards, work, other, PARTITIONS, restart=True)
    assert restarted.stats["out_of_core"]["ran"]["sign"] == len(shards)
    assert_identical(near_duplicates(whole, other), restarted.to_stage_result())


def test_bad_shards(corpus: pl.DataFrame, tmp_path: Path) -> None:
    shards = parquet_shards(corpus.head(2000), tmp_path / "in")
    shards[1].write_bytes(b"this is not a parquet file")
    with pytest.raises(CurateError, match=re.escape(str(shards[1]))) as caught:
        near_duplicates_out_of_core(shards, tmp_path / "work", NearDedupParams(), PARTITIONS)
    assert "cannot read record shard" in str(caught.value)
    no_text = tmp_path / "no_text.parquet"
    corpus.head(10).drop("text").write_parquet(no_text)
    with pytest.raises(CurateError, match=re.escape(str(no_text))):
        near_duplicates_out_of_core([no_text], tmp_path / "work2", NearDedupParams(), PARTITIONS)
    with pytest.raises(CurateError, match="index"):
        near_duplicates_out_of_core([shards[0]], tmp_path / "work3", NearDedupParams(), PARTITIONS, index="x")
    with pytest.raises(CurateError, match="at least one record shard"):
        near_duplicates_out_of_core([], tmp_path / "work4", NearDedupParams(), PARTITIONS)


def test_cli_out_of_core_equals_in_memory(tmp_path: Path) -> None:
    common = ["dedup", "--exact", "--near", "social-posts", "--threshold", "0.7", "--quiet"]
    run_cli(*common, "--out", str(tmp_path / "memory"), "--in-memory")
    run_cli(*common, "--out", str(tmp_path / "forced"), "--out-of-core", "--ooc-shard-rows", "200", "--partitions", "3")
    run_cli(*common, "--out", str(tmp_path / "auto"), "--out-of-core-above", "100", "--ooc-shard-rows", "300")
    run_cli(*common, "--out", str(tmp_path / "dask"), "--dask", "local:2", "--ooc-shard-rows", "200")
    refused = run_cli(*common, "--out", str(tmp_path / "refused"), "--dask", "local:2", "--in-memory", check=False)
    assert refused.returncode != 0 and "--dask" in refused.stderr and "Traceback" not in refused.stderr
    stages = {}
    for name in ("memory", "forced", "auto", "dask"):
        out = tmp_path / name
        assert not (out / ".checkpoints").exists()
        stages[name] = json.loads((out / "manifest.json").read_text())["stages"][-1]
        for part in ("annotations", "rejects"):
            frame = pl.read_parquet(out / part / "near_dup.parquet")
            if name == "memory":
                stages[f"memory-{part}"] = frame
            else:
                assert frame.equals(stages[f"memory-{part}"]), (name, part)
    assert "out_of_core" not in stages["memory"]["stats"]
    assert stages["forced"]["stats"]["out_of_core"]["partitions"] == 3
    assert stages["auto"]["stats"]["out_of_core"]["shards"] > 1
    assert stages["memory"]["rejected"] == stages["auto"]["rejected"] == stages["dask"]["rejected"] > 0
    assert stages["dask"]["stats"]["out_of_core"]["shards"] > 1


def output_bytes(done) -> dict[str, bytes]:
    return {f"{i}/{k}": path.read_bytes() for i, shard in enumerate(done.shards) for k, path in shard.items()}


def test_dask_cluster_run_equals_local_run_byte_for_byte(corpus: pl.DataFrame, tmp_path: Path) -> None:
    # Worker processes (processes=True): every unit and its arguments really travel to another process.
    from distributed import Client, LocalCluster

    shards = parquet_shards(corpus, tmp_path / "in")
    cases = {
        "parquet": (shards, NearDedupParams(), None),
        "frames-score-estimate": (
            list(frame_shards(corpus, SHARD_ROWS)),
            NearDedupParams(keep="score:quality", verify="estimate", threshold=0.75),
            scores_of(corpus),
        ),
    }
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        for name, (parts, params, scores) in cases.items():
            local = near_duplicates_out_of_core(parts, tmp_path / f"{name}-local", params, PARTITIONS, scores)
            work = tmp_path / f"{name}-dask"
            scaled = near_duplicates_out_of_core(
                parts, work, params, PARTITIONS, scores, dask=cluster.scheduler_address
            )
            assert output_bytes(scaled) == output_bytes(local), name
            assert scaled.stats == local.stats and scaled.rejected == local.rejected > 150, name
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        # A kill in the candidates pass of partition 1: on the cluster, only that unit is redone.
        (work / "candidates" / "00001" / "DONE").unlink()
        again = near_duplicates_out_of_core(parts, work, params, PARTITIONS, scores, dask=cluster.scheduler_address)
    assert again.stats["out_of_core"]["ran"] == {"candidates": 1}
    assert output_bytes(again) == output_bytes(local)
    assert len(executed) == 2 and all(count > 0 for count in executed.values()), executed  # both workers ran units


def test_dask_addresses(corpus: pl.DataFrame, tmp_path: Path) -> None:
    from curate.run.cluster import dask_client

    parts = list(frame_shards(corpus.head(2000), 700))
    local = near_duplicates_out_of_core(parts, tmp_path / "local", NearDedupParams(), PARTITIONS)
    threads = near_duplicates_out_of_core(parts, tmp_path / "threads", NearDedupParams(), PARTITIONS, dask="local:2")
    assert output_bytes(threads) == output_bytes(local) and local.rejected > 0
    for address, message in (("local:0", "positive number"), ("127.0.0.1:8786", "scheduler address")):
        with pytest.raises(CurateError, match=message):
            near_duplicates_out_of_core(parts, tmp_path / "bad", NearDedupParams(), PARTITIONS, dask=address)
    unreachable = r"tcp://127\.0\.0\.1:9: cannot reach the scheduler"
    with pytest.raises(CurateError, match=unreachable), dask_client("tcp://127.0.0.1:9", connect_timeout="1s"):
        pass


def test_scale_benchmark_quick_passes_its_checks() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "benchmarks/dedup.py", "--scale", "--quick"], capture_output=True, text=True, cwd=root
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["checks"]["identical_to_in_memory"] and all(result["checks"].values())
    assert result["scale_docs"] == 3000 and result["scale_peak_rss_mb"] > 0
    assert {"scale_peak_rss_mb", "scale_recall_j08", "scale_false_merge_rate", "scale_time_growth"} <= set(
        result["targets"]
    )
    # The DataTrove peer run, at its quick size: both sides removed documents and were timed.
    assert result["peer_docs"] == 2000 and result["checks"]["peer_records_add_up"]
    assert result["datatrove_seconds"] > 0 and result["peer_curate_seconds"] > 0
    assert result["datatrove_removed"] > 0 and result["peer_curate_removed"] > 0
    assert {"speedup_vs_datatrove", "peer_recall_margin_j08"} <= set(result["targets"])
