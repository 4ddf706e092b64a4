"""Field mappings: Dolly, LIMA, ShareGPT, seed tasks, and the registry's real files."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.io.ingest import Ingest, IngestOptions
from curate.records.ids import content_id


def records_of(*sources: str | Path, **options: object) -> pl.DataFrame:
    job = Ingest([str(s) for s in sources], IngestOptions(**options))
    return pl.concat([b[0] for b in job.batches()])


def test_dolly_mapping(tmp_path: Path) -> None:
    path = tmp_path / "dolly.jsonl"
    path.write_text(json.dumps({"instruction": "Who?", "context": "ctx", "response": "Me.", "category": "open_qa"}))
    rec = records_of(path).row(0, named=True)
    assert (rec["instruction"], rec["input"], rec["output"]) == ("Who?", "ctx", "Me.")
    assert json.loads(rec["meta"]) == {"category": "open_qa"}


def test_sharegpt_multi_turn_is_lossless(tmp_path: Path) -> None:
    chat = {
        "id": "conv-7",
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "Bye"},
            {"from": "gpt", "value": "Bye!"},
        ],
    }
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(chat) + "\n")
    rec = records_of(path).row(0, named=True)
    assert rec["source_id"] == "conv-7"
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in rec["messages"]] == [t["value"] for t in chat["conversations"]]
    assert (rec["instruction"], rec["output"]) == ("Hi", "Hello!")
    assert "Bye!" in rec["text"]


def test_lima_from_registry(data_dir: Path) -> None:
    frame = records_of("lima")
    assert frame.height == 1030
    multi = frame.filter(pl.col("messages").list.len() > 2)
    assert multi.height == 30
    assert frame["license"].unique().to_list() == ["cc-by-nc-sa-4.0"]
    assert {json.loads(m)["source"] for m in frame["meta"]} >= {"stackexchange", "wikihow"}


def test_seed_tasks_and_eval(data_dir: Path) -> None:
    seeds = records_of("alpaca-seed-tasks")
    assert seeds.height == 175 and seeds["source_id"][0] == "seed_task_0"
    evals = records_of("alpaca-eval")
    assert evals.height == 805 and json.loads(evals["meta"][0])["dataset"] == "helpful_base"


def test_ids_are_content_hashes_and_unique(tmp_path: Path) -> None:
    rows = [{"instruction": "A", "input": "", "output": "B"}] * 3 + [{"instruction": "A ", "input": "", "output": "B"}]
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(rows))
    ids = records_of(path)["id"].to_list()
    base = content_id("instruction", "A", "", "B")
    assert ids == [base, f"{base}-2", f"{base}-3", f"{base}-4"]
    assert base == "b5243a8a3dc1acfd"  # pinned: the same on every machine and run
