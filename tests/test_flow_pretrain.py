"""The curate-pretrain flow on a real corpus (the shared social posts) split into JSONL shards."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
from prefect.testing.utilities import prefect_test_harness

from flows.curate_pretrain import curate_pretrain


def test_curate_pretrain_on_sharded_posts(tmp_path: Path, data_dir: Path) -> None:
    posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")
    shards = tmp_path / "posts"
    shards.mkdir()
    half = len(posts) // 2
    for n, part in enumerate((posts[:half], posts[half:])):
        lines = [json.dumps({"text": text, "url": f"post/{n}/{i}"}) for i, text in enumerate(part)]
        (shards / f"part-{n:05d}.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    out_of_core = tmp_path / "run-out-of-core"
    with prefect_test_harness(server_startup_timeout=120):
        result = curate_pretrain(sources=[str(shards)], out=str(out), text_field="text", shard_rows=300)
        curate_pretrain(
            sources=[str(shards)], out=str(out_of_core), text_field="text", shard_rows=300, near_out_of_core_above=0
        )
    # Near dedup out of core (forced by the threshold) gives the same run.
    for part in ("annotations", "rejects"):
        assert pl.read_parquet(out_of_core / part / "near_dup.parquet").equals(
            pl.read_parquet(out / part / "near_dup.parquet")
        )
    ooc_stages = {s["name"]: s for s in json.loads((out_of_core / "manifest.json").read_text())["stages"]}
    assert ooc_stages["near_dup"]["stats"]["out_of_core"]["shards"] > 1
    assert not (out_of_core / ".checkpoints").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    stages = {s["name"]: s for s in manifest["stages"]}
    assert list(stages) == ["ingest", "exact_dedup", "near_dup", "language", "gopher_quality", "c4_quality", "pii"]
    assert result["in"] == len(posts) == result["kept"] + result["rejected"]
    assert stages["exact_dedup"]["rejected"] > 4000  # the posts repeat a lot, across both shards
    assert all(s["in"] == s["kept"] + s["rejected"] for s in manifest["stages"])
    assert [e["path"] for e in manifest["outputs"]["annotations"]][-1] == "annotations/pii.parquet"
    assert Path(result["card"]).exists() and list(result["seconds"])[-2:] == ["export", "card"]
