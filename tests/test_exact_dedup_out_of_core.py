"""Out-of-core exact dedup: the same kept records, rejects and annotations as the in-memory stage
on real data with planted exact duplicates, resuming a killed run, bad shards, the passes on a
real Dask cluster (byte-identical to the local run), and the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.dedup.exact_out_of_core import exact_duplicates_out_of_core
from curate.dedup.out_of_core import frame_shards
from curate.errors import CurateError
from curate.records.normalize import TextNormalization
from curate.records.schema import conform
from curate.stages.result import StageResult
from tests import out_of_core_checks
from tests.conftest import ingested, run_cli
from tests.out_of_core_checks import assert_same_records

SHARD_ROWS = 700
PARTITIONS = 3


@pytest.fixture(scope="module")
def corpus() -> pl.DataFrame:
    """Alpaca records and the social posts (which repeat a lot), plus planted exact duplicates of
    Alpaca records that differ only in case and whitespace, shuffled across shards."""
    alpaca = conform(ingested("alpaca").head(2500))
    posts = conform(ingested("social-posts").head(2500))
    rng = np.random.default_rng(11)
    picked = alpaca[rng.choice(alpaca.height, 300, replace=False)]
    planted = picked.with_columns(
        ("planted-" + pl.col("id")).alias("id"),
        pl.col("instruction").str.to_uppercase(),
        ("  " + pl.col("output").str.replace_all(" ", "  ") + "\n").alias("output"),
    )
    frame = pl.concat([alpaca, posts, planted])
    return frame[rng.permutation(frame.height)]


def parquet_shards(frame: pl.DataFrame, folder: Path) -> list[Path]:
    return out_of_core_checks.parquet_shards(frame, folder, SHARD_ROWS)


def assert_identical(memory: StageResult, out_of_core: StageResult) -> None:
    assert_same_records(memory, out_of_core)
    assert out_of_core.record()["rejected_by_reason"] == memory.record()["rejected_by_reason"]


@pytest.mark.parametrize("case", ["parquet", "frames-strict"])
def test_identical_to_in_memory(case: str, corpus: pl.DataFrame, tmp_path: Path) -> None:
    params = ExactDedupParams(TextNormalization())
    shards = parquet_shards(corpus, tmp_path / "in")
    if case == "frames-strict":
        params = ExactDedupParams(TextNormalization("none", False, False))
        shards = list(frame_shards(corpus, SHARD_ROWS))
    memory = exact_duplicates(corpus, params)
    done = exact_duplicates_out_of_core(shards, tmp_path / "work", params, PARTITIONS)
    assert done.n_in == done.kept + done.rejected == corpus.height
    assert_identical(memory, done.to_stage_result())
    # Each planted copy and its original: the later of the two is rejected, pointing at the other.
    pairs = memory.rejects.filter(
        pl.col("id").str.starts_with("planted-") | pl.col("duplicate_of").str.starts_with("planted-")
    )
    same = pairs["id"].str.strip_prefix("planted-") == pairs["duplicate_of"].str.strip_prefix("planted-")
    if case == "parquet":
        assert pairs.height == 300 and same.all()
        assert 0 < pairs["id"].str.starts_with("planted-").sum() < 300
    else:  # case and whitespace count: the planted copies stay
        assert pairs.height == 0
    assert memory.rejects.height > 1000  # the posts repeat across shards
    assert done.stats["out_of_core"]["shards"] == -(-corpus.height // SHARD_ROWS)


def test_resume_after_a_kill(corpus: pl.DataFrame, tmp_path: Path) -> None:
    params = ExactDedupParams()
    shards = parquet_shards(corpus, tmp_path / "in")
    work = tmp_path / "work"
    first = exact_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert first.stats["out_of_core"]["ran"]["hashes"] == len(shards)
    expected = first.to_stage_result()
    hashed = {p: p.stat().st_mtime_ns for p in work.glob("hashes/*/hashes-0.ipc")}

    # A kill in the groups pass of partition 1 and while writing shard 2's output.
    (work / "groups" / "00001" / "DONE").unlink()
    (work / "output" / "00002" / "DONE").unlink()
    (work / "output" / "00002" / ".tmp-4242-kept.parquet").write_bytes(b"PAR1 half a file")
    again = exact_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert again.stats["out_of_core"]["ran"] == {"groups": 1, "output": 1}
    assert {p: p.stat().st_mtime_ns for p in work.glob("hashes/*/hashes-0.ipc")} == hashed
    assert not list(work.rglob(".tmp-*"))
    assert_identical(expected, again.to_stage_result())

    # A shard that changed is hashed again (only it), and the later passes are redone.
    changed = pl.read_parquet(shards[1]).with_columns(pl.col("text").str.to_uppercase())
    changed.write_parquet(shards[1])
    third = exact_duplicates_out_of_core(shards, work, params, PARTITIONS)
    assert third.stats["out_of_core"]["ran"]["hashes"] == 1
    whole = pl.concat([pl.read_parquet(p) for p in shards])
    assert_identical(exact_duplicates(whole, params), third.to_stage_result())

    other = ExactDedupParams(TextNormalization("none", False, False))
    with pytest.raises(CurateError, match="other settings"):
        exact_duplicates_out_of_core(shards, work, other, PARTITIONS)
    restarted = exact_duplicates_out_of_core(shards, work, other, PARTITIONS, restart=True)
    assert restarted.stats["out_of_core"]["ran"]["hashes"] == len(shards)
    assert_identical(exact_duplicates(whole, other), restarted.to_stage_result())


def output_bytes(done) -> dict[str, bytes]:
    return {f"{i}/{k}": path.read_bytes() for i, shard in enumerate(done.shards) for k, path in shard.items()}


def test_dask_cluster_run_equals_local_run_byte_for_byte(corpus: pl.DataFrame, tmp_path: Path) -> None:
    # Worker processes (processes=True): every unit and its arguments really travel to another process.
    from distributed import Client, LocalCluster

    params = ExactDedupParams()
    memory = exact_duplicates(corpus, params)
    cases = {"parquet": parquet_shards(corpus, tmp_path / "in"), "frames": list(frame_shards(corpus, SHARD_ROWS))}
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        for name, parts in cases.items():
            local = exact_duplicates_out_of_core(parts, tmp_path / f"{name}-local", params, PARTITIONS)
            work = tmp_path / f"{name}-dask"
            scaled = exact_duplicates_out_of_core(parts, work, params, PARTITIONS, dask=cluster.scheduler_address)
            assert output_bytes(scaled) == output_bytes(local), name
            assert scaled.stats == local.stats and scaled.rejected == local.rejected > 1000, name
            assert_identical(memory, scaled.to_stage_result())
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        prefixes = set(cluster.scheduler.task_prefixes)
        # A kill in the groups pass of partition 1: on the cluster, only that unit is redone.
        (work / "groups" / "00001" / "DONE").unlink()
        again = exact_duplicates_out_of_core(parts, work, params, PARTITIONS, dask=cluster.scheduler_address)
    assert again.stats["out_of_core"]["ran"] == {"groups": 1}
    assert output_bytes(again) == output_bytes(local)
    passes = ("hash_shard", "shared_partition", "keys_shard", "groups_partition", "output_shard")
    assert {f"exact_dedup.{name}" for name in passes} <= prefixes, prefixes  # every pass ran there
    assert len(executed) == 2 and all(count > 0 for count in executed.values()), executed  # both workers ran units


def test_bad_shards(corpus: pl.DataFrame, tmp_path: Path) -> None:
    shards = parquet_shards(corpus.head(2000), tmp_path / "in")
    shards[1].write_bytes(b"this is not a parquet file")
    with pytest.raises(CurateError, match=re.escape(str(shards[1]))) as caught:
        exact_duplicates_out_of_core(shards, tmp_path / "work", ExactDedupParams(), PARTITIONS)
    assert "cannot read record shard" in str(caught.value)
    no_text = tmp_path / "no_text.parquet"
    corpus.head(10).drop("text").write_parquet(no_text)
    with pytest.raises(CurateError, match=re.escape(str(no_text))):
        exact_duplicates_out_of_core([no_text], tmp_path / "work2", ExactDedupParams(), PARTITIONS)
    with pytest.raises(CurateError, match="at least one record shard"):
        exact_duplicates_out_of_core([], tmp_path / "work3", ExactDedupParams(), PARTITIONS)


def test_cli_exact_out_of_core_equals_in_memory(tmp_path: Path) -> None:
    common = ["dedup", "--exact", "social-posts", "--quiet"]
    run_cli(*common, "--out", str(tmp_path / "memory"), "--in-memory")
    run_cli(*common, "--out", str(tmp_path / "forced"), "--out-of-core", "--ooc-shard-rows", "500", "--partitions", "3")
    run_cli(*common, "--out", str(tmp_path / "auto"), "--out-of-core-above", "100", "--ooc-shard-rows", "800")
    run_cli(*common, "--out", str(tmp_path / "dask"), "--dask", "local:2", "--ooc-shard-rows", "800")
    stages = {}
    for name in ("memory", "forced", "auto", "dask"):
        out = tmp_path / name
        assert not (out / ".checkpoints").exists()
        manifest = json.loads((out / "manifest.json").read_text())
        stages[name] = manifest["stages"][-1]
        stages[f"{name}-data"] = [e["sha256"] for e in manifest["outputs"]["data"]]
        for part in ("annotations", "rejects"):
            frame = pl.read_parquet(out / part / "exact_dedup.parquet")
            if name == "memory":
                stages[f"memory-{part}"] = frame
            else:
                assert frame.equals(stages[f"memory-{part}"]), (name, part)
    assert "stats" not in stages["memory"]
    assert stages["forced"]["stats"]["out_of_core"]["partitions"] == 3
    assert stages["auto"]["stats"]["out_of_core"]["shards"] > 1
    assert stages["memory"]["rejected"] == stages["auto"]["rejected"] == stages["dask"]["rejected"] > 4000
    assert stages["dask"]["stats"]["out_of_core"]["shards"] > 1  # --dask implies --out-of-core
    assert stages["memory-data"] == stages["forced-data"] == stages["auto-data"] == stages["dask-data"]
