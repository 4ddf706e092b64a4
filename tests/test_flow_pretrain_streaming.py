"""curate-pretrain over shards: the out-of-core path (forced, or chosen by size, with the filters
on a Dask LocalCluster) gives the same bytes as the in-memory path, and a run killed part-way
(SIGKILL) resumes at the shard it was on and ends with the same bytes as an uninterrupted run."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
from prefect.testing.utilities import prefect_test_harness

from flows.curate_pretrain import curate_pretrain
from tests.conftest import ROOT

SHARD_ROWS = 700


def posts_corpus(data_dir: Path, folder: Path) -> Path:
    """The shared social posts as three JSONL files (one gzipped), duplicates spread over all three."""
    posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")
    folder.mkdir()
    third = len(posts) // 3
    for n in range(3):
        part = posts[n * third : (n + 1) * third] if n < 2 else posts[2 * third :]
        data = "".join(json.dumps({"text": t, "url": f"post/{n}/{i}"}) + "\n" for i, t in enumerate(part))
        if n == 1:
            (folder / f"part-{n}.jsonl.gz").write_bytes(gzip.compress(data.encode(), mtime=0))
        else:
            (folder / f"part-{n}.jsonl").write_text(data)
    return folder


def light_recipe(folder: Path) -> Path:
    """The default recipe with language and PII only: the posts are too short for Gopher and C4,
    and the export needs enough records for several output shards."""
    import yaml

    recipe = yaml.safe_load((ROOT / "curate" / "recipes" / "curate-pretrain.yaml").read_text())
    recipe["filters"] = [f for f in recipe["filters"] if f["use"] in ("language", "pii")]
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def outputs(out: Path) -> dict[str, list[str]]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {group: [e["sha256"] for e in manifest["outputs"][group]] for group in ("data", "rejects", "annotations")}


def stages(out: Path) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads((out / "manifest.json").read_text())["stages"]}


def test_out_of_core_and_in_memory_give_the_same_run(tmp_path: Path, data_dir: Path) -> None:
    corpus = posts_corpus(data_dir, tmp_path / "posts")
    from distributed import LocalCluster

    runs = {name: tmp_path / name for name in ("memory", "forced", "auto", "cluster")}
    recipe = str(light_recipe(tmp_path))
    common = {"sources": [str(corpus)], "text_field": "text", "max_shard_rows": 300, "recipe": recipe}
    with prefect_test_harness(server_startup_timeout=120):
        curate_pretrain(out=str(runs["memory"]), shard_rows=SHARD_ROWS, out_of_core=False, **common)
        curate_pretrain(out=str(runs["forced"]), shard_rows=SHARD_ROWS, out_of_core=True, partitions=3, **common)
        result = curate_pretrain(
            out=str(runs["auto"]),
            shard_rows=1100,
            exact_out_of_core_above=3000,
            near_out_of_core_above=500,
            dask="local:2",
            **common,
        )
        # A running scheduler (tcp://): the filters and the out-of-core exact and near dedup's passes run on it.
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address="127.0.0.1:0"
        ) as cluster:
            address = cluster.scheduler_address
            curate_pretrain(out=str(runs["cluster"]), shard_rows=SHARD_ROWS, out_of_core=True, dask=address, **common)
            # The out-of-core passes' units (keys "STAGE.PASS-...", curate.dedup.out_of_core.Units) ran there.
            prefixes = set(cluster.scheduler.task_prefixes)
            exact = {f"exact_dedup.{p}" for p in ("hash_shard", "shared_partition", "keys_shard", "output_shard")}
            assert exact | {"near_dup.sign_shard", "near_dup.output_shard", "filter_shard"} <= prefixes, prefixes
    memory = stages(runs["memory"])
    assert list(memory) == ["ingest", "exact_dedup", "near_dup", "language", "pii"]
    assert memory["exact_dedup"]["rejected"] > 4000 and memory["near_dup"]["rejected"] > 0
    assert all(s["in"] == s["kept"] + s["rejected"] for s in memory.values())
    assert all("out_of_core" not in s.get("stats", {}) for s in memory.values())
    data = outputs(runs["memory"])["data"]
    assert len(data) > 1  # bounded output shards (max_shard_rows), not one file
    for name in ("forced", "auto", "cluster"):
        other = stages(runs[name])
        assert outputs(runs[name])["data"] == data, name  # the same bytes
        for stage in ("exact_dedup", "near_dup"):
            assert other[stage]["stats"]["out_of_core"]["shards"] > 1, (name, stage)
        for stage, record in memory.items():
            assert {k: other[stage][k] for k in ("in", "kept", "rejected", "rejected_by_reason")} == {
                k: record[k] for k in ("in", "kept", "rejected", "rejected_by_reason")
            }, (name, stage)
            for part in ("rejects", "annotations"):
                path = Path(part) / f"{stage}.parquet"
                if (runs["memory"] / path).exists():
                    assert pl.read_parquet(runs[name] / path).equals(pl.read_parquet(runs["memory"] / path)), (
                        name,
                        path,
                    )
        assert not (runs[name] / ".checkpoints").exists()
    assert stages(runs["forced"])["exact_dedup"]["stats"]["out_of_core"]["partitions"] == 3
    assert result["in"] == result["kept"] + result["rejected"] == memory["ingest"]["in"]


def flow(out: Path, corpus: Path, home: Path, recipe: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    args = ["--out", str(out), "--text-field", "text", "--recipe", str(recipe), "--shard-rows", "400"]
    args += ["--out-of-core", "--partitions", "3"]
    return subprocess.Popen(
        [sys.executable, "-m", "flows.curate_pretrain", str(corpus), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_killed_flow_resumes_at_its_shard_and_matches_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    corpus = posts_corpus(data_dir, tmp_path / "posts")
    home = tmp_path / "prefect"
    recipe = light_recipe(tmp_path)
    reference = tmp_path / "reference"
    done = flow(reference, corpus, home, recipe)
    assert done.wait(timeout=600) == 0, done.stdout.read()[-3000:]
    n_shards = stages(reference)["near_dup"]["stats"]["out_of_core"]["shards"]
    assert n_shards > 3

    out = tmp_path / "killed"
    proc = flow(out, corpus, home, recipe)
    # Killed in the language filter, after its second shard (of many, each taking a while) is done.
    filtered = out / ".checkpoints" / "stream" / "stages" / "language" / "00001" / "DONE"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not filtered.exists():
        assert proc.poll() is None, "the flow ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the kill came too late to test anything"

    resumed = flow(out, corpus, home, recipe)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]
    # Ingest and dedup are not redone, nor the language filter's finished shards.
    assert "after stage near_dup (3 stage(s) already done)" in output
    resumed_at = re.search(r"language: resuming, (\d+) of (\d+) shards already done", output)
    assert resumed_at is not None, output[-3000:]
    assert 2 <= int(resumed_at[1]) < int(resumed_at[2]) == n_shards
    assert outputs(out) == outputs(reference)  # data, rejects and annotations: the same bytes
    assert [s["kept"] for s in stages(out).values()] == [s["kept"] for s in stages(reference).values()]
    assert not (out / ".checkpoints").exists()
