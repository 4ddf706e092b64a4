"""ShardedRun, the library under curate-pretrain: books kept over shards, an input with no records
left, a damaged work shard, and a resume that picks up the kept shards of the last booked stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.dedup.exact_out_of_core import exact_duplicates_out_of_core
from curate.errors import CurateError
from curate.io.ingest import IngestOptions
from curate.run.pipeline import RunWriter
from curate.run.sharded import ShardedRun, read_shard
from curate.stages.filter import run_filter
from curate.stages.registry import get


def posts_file(data_dir: Path, path: Path, blank: bool = False) -> Path:
    posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")[:1500]
    posts[7] = posts[900] = " "  # rejected at ingest as empty
    path.write_text("".join(json.dumps({"text": " " if blank else t}) + "\n" for t in posts))
    return path


def sharded_run(out: Path, shard_rows: int = 400) -> ShardedRun:
    return ShardedRun(RunWriter(out, "test-sharded", {"plan": 1}), shard_rows=shard_rows)


def test_stages_over_shards_keep_the_books_and_resume(tmp_path: Path, data_dir: Path) -> None:
    source = posts_file(data_dir, tmp_path / "posts.jsonl")
    out = tmp_path / "run"
    run = sharded_run(out)
    run.open([str(source)], IngestOptions(text_field="text"))
    assert len(run.shards) == 4 and run.records == 1500 - 2
    done = exact_duplicates_out_of_core(run.shards, run.stage_dir("exact_dedup"), ExactDedupParams(), 3)
    run.add_out_of_core("exact_dedup", done)
    assert run.records == done.kept < 1000

    # A new process over the same run: the books and kept shards come back from state.json.
    again = sharded_run(out)
    again.open([str(source)], IngestOptions(text_field="text"))
    assert again.skip("exact_dedup") and again.shards == run.shards and again.records == run.records
    length = get("filter", "length")(min_words={"text": 5})
    for index, path in again.pending("length")[:2]:
        again.save_shard("length", index, run_filter(read_shard(path), length, "length"))
    assert len(again.pending("length")) == len(again.shards) - 2
    for index, path in again.pending("length"):
        again.save_shard("length", index, run_filter(read_shard(path), length, "length"))
    again.close_stage("length")
    manifest = again.finish()
    stages = {s["name"]: s for s in manifest["stages"]}
    assert list(stages) == ["ingest", "exact_dedup", "length"]
    assert all(s["in"] == s["kept"] + s["rejected"] for s in stages.values())
    assert stages["length"]["rejected"] > 0 and stages["exact_dedup"]["in"] == 1498
    assert exact_duplicates(again.writer.run.records(), ExactDedupParams()).rejects.height == 0  # none left
    assert manifest["records"]["kept"] == sum(f["rows"] for f in manifest["outputs"]["data"])
    assert not (out / ".checkpoints").exists()

    # An earlier run as the input: its kept records, its books carried on.
    follow = sharded_run(tmp_path / "follow", shard_rows=100)
    follow.open([str(out)], IngestOptions())
    assert follow.records == manifest["records"]["kept"] and len(follow.shards) > 1
    follow.add(exact_duplicates(follow.whole(), ExactDedupParams()))
    carried = follow.finish()
    assert [s["name"] for s in carried["stages"]] == ["ingest", "exact_dedup", "length", "exact_dedup-2"]
    assert carried["records"]["kept"] == manifest["records"]["kept"]


def test_no_records_left_and_a_damaged_shard(tmp_path: Path, data_dir: Path) -> None:
    source = posts_file(data_dir, tmp_path / "blank.jsonl", blank=True)
    run = sharded_run(tmp_path / "run")
    run.open([str(source)], IngestOptions(text_field="text"))
    assert run.records == 0 and len(run.shards) == 1  # one empty shard, so the next stage has input
    run.add(exact_duplicates(run.whole(), ExactDedupParams()))
    manifest = run.finish()
    assert manifest["records"] == {"in": 1500, "kept": 0, "rejected": 1500}

    other = sharded_run(tmp_path / "run2")
    other.open([str(posts_file(data_dir, tmp_path / "posts.jsonl"))], IngestOptions(text_field="text"))
    other.shards[1].write_bytes(b"PAR1 not really")
    with pytest.raises(CurateError, match=str(other.shards[1])):
        other.whole()
