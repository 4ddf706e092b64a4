"""What the out-of-core dedup tests share: a frame written as Parquet shards, and the check that an
out-of-core stage's result equals the in-memory stage's, record for record."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from curate.dedup.out_of_core import frame_shards
from curate.stages.result import StageResult


def parquet_shards(frame: pl.DataFrame, folder: Path, rows: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(frame_shards(frame, rows)):
        path = folder / f"part-{i:03d}.parquet"
        part.write_parquet(path)
        paths.append(path)
    return paths


def assert_same_records(memory: StageResult, out_of_core: StageResult) -> None:
    assert out_of_core.n_in == memory.n_in
    out_of_core.check()
    assert out_of_core.kept["id"].to_list() == memory.kept["id"].to_list()
    assert out_of_core.kept.equals(memory.kept)
    columns = ["id", "duplicate_of", "detail", "reason", "stage"]
    assert out_of_core.rejects.select(columns).equals(memory.rejects.select(columns))
    assert out_of_core.rejects.equals(memory.rejects)
    assert out_of_core.annotations.equals(memory.annotations)
