"""ShardedRun, the library under curate-pretrain: books kept over shards, an input with no records
left, a damaged work shard, a resume that picks up the kept shards of the last booked stage, and an
ingest stopped by a truncated file that goes on at that file once it is fixed."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import polars as pl
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


def posts_folder(data_dir: Path, folder: Path, files: int = 8) -> dict[str, bytes]:
    """The posts as ``files`` JSONL files (every third gzipped), each repeating part of the one before,
    so ids repeat across files; two blank posts are rejected. Returns each file's bytes by name."""
    posts = (data_dir / "corpora" / "social_posts.txt").read_text().split("\n------\n")[:1600]
    posts[5] = posts[1000] = " "
    folder.mkdir()
    written = {}
    for n in range(files):
        part = posts[n * 200 : (n + 1) * 200] + posts[max(0, n * 200 - 60) : n * 200]
        data = "".join(json.dumps({"text": t}) + "\n" for t in part).encode()
        name = f"part-{n}.jsonl.gz" if n % 3 == 1 else f"part-{n}.jsonl"
        written[name] = gzip.compress(data, mtime=0) if name.endswith(".gz") else data
        (folder / name).write_bytes(written[name])
    return written


def test_ingest_resumes_at_the_file_it_was_on(tmp_path: Path, data_dir: Path, capsys) -> None:
    files = posts_folder(data_dir, tmp_path / "posts")
    options = IngestOptions(text_field="text", batch_size=100)  # batches, so shards are cut inside a file
    reference = sharded_run(tmp_path / "reference", shard_rows=250)
    reference.open([str(tmp_path / "posts")], options)
    expected = reference.finish()
    ids = pl.concat([pl.read_parquet(tmp_path / "reference" / e["path"]) for e in expected["outputs"]["data"]])["id"]
    assert ids.str.ends_with("-2").sum() > 100  # repeats across files get suffixes: the seen ids matter

    # File 4 (gzip) truncated: the ingest stops with one line naming it, after files 0-3 and shards of file 4.
    broken = tmp_path / "posts" / "part-4.jsonl.gz"
    broken.write_bytes(files["part-4.jsonl.gz"][: len(files["part-4.jsonl.gz"]) // 2])
    out = tmp_path / "run"
    with pytest.raises(CurateError, match=re.escape(f"{broken}:") + r"\d+: compressed data is truncated"):
        sharded_run(out, shard_rows=250).open([str(tmp_path / "posts")], options)
    work = out / ".checkpoints" / "stream" / "ingest"
    assert [p.parent.name for p in sorted((work / "files").glob("*/DONE"))] == ["00000", "00001", "00002", "00003"]
    marked = [name for m in sorted((work / "files").glob("*/DONE")) for name in json.loads(m.read_text())["shards"]]
    assert sorted(p.name for p in work.glob("part-*.parquet")) == marked
    # As a kill inside file 4 would leave them: a shard it finished, and one half-written.
    (work / f"part-{len(marked):05d}.parquet").write_bytes(b"PAR1 a shard of file 4 the marker does not list")
    (work / f".tmp-4242-part-{len(marked) + 1:05d}.parquet").write_bytes(b"PAR1 half a shard")

    broken.write_bytes(files["part-4.jsonl.gz"])  # fixed: the rerun goes on at file 4
    capsys.readouterr()
    resumed = sharded_run(out, shard_rows=250)
    resumed.open([str(tmp_path / "posts")], options)
    assert "ingest: resuming, 4 of 8 files already done" in capsys.readouterr().err
    assert resumed.records == reference.records and [p.name for p in resumed.shards] == [
        p.name for p in reference.shards
    ]
    manifest = resumed.finish()
    for group in ("data", "rejects"):
        assert [e["sha256"] for e in manifest["outputs"][group]] == [e["sha256"] for e in expected["outputs"][group]]
    assert manifest["stages"] == expected["stages"] and manifest["inputs"] == expected["inputs"]
    assert manifest["stages"][0]["rejected_by_reason"] == {"empty": 2}
