"""curate-pretrain over shards: the out-of-core path (forced, or chosen by size, with the filters
on a Dask LocalCluster) gives the same bytes as the in-memory path, and a run killed part-way
(SIGKILL, in a filter or in the middle of ingesting a many-file corpus) resumes at the shard or
source file it was on and ends with the same bytes as an uninterrupted run; a truncated file in
the middle stops the run with one line naming it, and the rerun after the fix goes on at that file."""

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
import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.curate_pretrain import curate_pretrain
from tests.conftest import ROOT, run_cli

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


def flow_env(home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def flow_args(out: Path, recipe: Path, shard_rows: int) -> list[str]:
    args = ["--out", str(out), "--text-field", "text", "--recipe", str(recipe), "--shard-rows", str(shard_rows)]
    return [*args, "--out-of-core", "--partitions", "3"]


def flow(out: Path, corpus: Path, home: Path, recipe: Path, shard_rows: int = 400) -> subprocess.Popen:
    env = flow_env(home)
    args = flow_args(out, recipe, shard_rows)
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


INGEST_SHARD_ROWS = 2000


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, Path]:
    """The posts as ten JSONL files (file 7 gzipped): five small ones, then a large one (every post 20
    times, read in several batches), then four small ones, so shards span files, ids repeat across
    files and a kill can land inside file 5; with a recipe of PII only, and an uninterrupted run."""
    root = tmp_path_factory.mktemp("many")
    posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")
    corpus = root / "corpus"
    corpus.mkdir()
    parts = [posts[n * 550 : (n + 1) * 550] for n in range(5)]
    parts.append(posts * 20)
    parts += [posts[2750 + n * 800 : 2750 + (n + 1) * 800] for n in range(4)]
    for n, part in enumerate(parts):
        data = "".join(json.dumps({"text": t, "url": f"post/{n}/{i}"}) + "\n" for i, t in enumerate(part))
        if n == 7:
            (corpus / f"part-{n}.jsonl.gz").write_bytes(gzip.compress(data.encode(), mtime=0))
        else:
            (corpus / f"part-{n}.jsonl").write_text(data)
    import yaml

    recipe = yaml.safe_load((ROOT / "curate" / "recipes" / "curate-pretrain.yaml").read_text())
    recipe["filters"] = [f for f in recipe["filters"] if f["use"] == "pii"]
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    paths = {"corpus": corpus, "recipe": root / "recipe.yaml", "home": root / "prefect", "reference": root / "ref"}
    done = flow(paths["reference"], corpus, paths["home"], paths["recipe"], INGEST_SHARD_ROWS)
    output = done.communicate(timeout=600)[0]  # read as it runs: a full pipe would stall the flow
    assert done.returncode == 0, output[-3000:]
    return paths


def test_killed_during_ingest_resumes_at_its_file(tmp_path: Path, many_files: dict[str, Path]) -> None:
    corpus, home, recipe, reference = (many_files[k] for k in ("corpus", "home", "recipe", "reference"))
    ingest = stages(reference)["ingest"]
    assert ingest["in"] > 120_000 and ingest["rejected"] > 0
    out = tmp_path / "killed"
    proc = flow(out, corpus, home, recipe, INGEST_SHARD_ROWS)
    # Killed once files 0-4 are done and the large file 5 has written a shard their markers do not list.
    work = out / ".checkpoints" / "stream" / "ingest"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the flow ended before it could be killed"
        if (work / "files" / "00004" / "DONE").exists():
            markers = [json.loads(m.read_text()) for m in sorted((work / "files").glob("*/DONE"))]
            if (work / f"part-{sum(len(m['shards']) for m in markers):05d}.parquet").exists():
                break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work.parent / "state.json").exists(), "the kill came after ingest"
    assert not (work / "files" / "00005" / "DONE").exists(), "the kill came after file 5"
    finished = {p.parent.name for p in (work / "files").glob("*/DONE")}
    assert finished == {f"{k:05d}" for k in range(5)}
    listed = {name for m in (work / "files").glob("*/DONE") for name in json.loads(m.read_text())["shards"]}
    assert {p.name for p in work.glob("part-*.parquet")} - listed, "file 5 had written no shard of its own"

    resumed = flow(out, corpus, home, recipe, INGEST_SHARD_ROWS)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output[-3000:]
    assert "ingest: resuming, 5 of 10 files already done" in output, output[-3000:]
    assert outputs(out) == outputs(reference)  # data, rejects and annotations: the same bytes
    assert stages(out) == stages(reference)  # the same books, stage by stage
    manifest, expected = (json.loads((run / "manifest.json").read_text()) for run in (out, reference))
    assert manifest["inputs"] == expected["inputs"] and manifest["records"] == expected["records"]
    assert not (out / ".checkpoints").exists()


def test_truncated_file_mid_corpus_is_one_line_and_the_fixed_rerun_goes_on(
    tmp_path: Path, many_files: dict[str, Path]
) -> None:
    corpus, home, recipe, reference = (many_files[k] for k in ("corpus", "home", "recipe", "reference"))
    gz = corpus / "part-7.jsonl.gz"
    good = gz.read_bytes()
    out = tmp_path / "run"
    command = ["run", "curate-pretrain", str(corpus), *flow_args(out, recipe, INGEST_SHARD_ROWS)]
    try:
        gz.write_bytes(good[: len(good) // 2])
        failed = run_cli(*command, check=False, env=flow_env(home))
        assert failed.returncode == 2, failed.stdout + failed.stderr
        errors = [line for line in failed.stderr.splitlines() if line.startswith("curate: error:")]
        named = rf"curate: error: {re.escape(str(gz))}:\d+: compressed data is truncated or corrupt \(.*\)"
        assert len(errors) == 1 and re.fullmatch(named, errors[0]), failed.stderr[-3000:]
        assert "Traceback" not in failed.stdout + failed.stderr
        assert not (out / "manifest.json").exists()
    finally:
        gz.write_bytes(good)
    done = run_cli(*command, env=flow_env(home))
    assert "ingest: resuming, 7 of 10 files already done" in done.stdout + done.stderr
    assert outputs(out) == outputs(reference)
    assert stages(out) == stages(reference)
