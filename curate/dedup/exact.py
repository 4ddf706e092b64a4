"""Exact deduplication on normalized content.

The key of a record is its normalized content: instruction, input and output for
single-turn instruction records, ``text`` for text records and chats (whose ``text`` holds
every turn). The first record with a key is kept; every later one is rejected as
``exact_duplicate`` with ``duplicate_of`` set to the kept id. ``annotations/exact_dedup``
holds ``exact_copies`` (how many records share the key) for every record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import polars as pl

from curate.normalize import TextNormalization
from curate.schema import ID, INPUT, INSTRUCTION, KIND, KIND_TEXT, MESSAGES, OUTPUT, TEXT, rejects_from
from curate.stage import StageResult

STAGE = "exact_dedup"
REASON = "exact_duplicate"
_SEP = "\x1f"


@dataclass(frozen=True)
class ExactDedupParams:
    normalization: TextNormalization = field(default_factory=TextNormalization)

    def as_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization.as_dict()}


def dedup_keys(records: pl.DataFrame, normalization: TextNormalization) -> pl.Series:
    """The normalized comparison key of every record."""
    whole_text = (records[KIND] == KIND_TEXT) | records[MESSAGES].is_not_null()
    key = pl.Series("key", [None] * records.height, dtype=pl.String)
    if whole_text.any():
        key = normalization.series(records[TEXT])
    if not whole_text.all():
        parts = [normalization.series(records[c]) for c in (INSTRUCTION, INPUT, OUTPUT)]
        joined = pl.DataFrame(parts).select(pl.concat_str(pl.all(), separator=_SEP)).to_series()
        key = joined if not whole_text.any() else pl.select(pl.when(whole_text).then(key).otherwise(joined)).to_series()
    return key.alias("key")


def exact_duplicates(records: pl.DataFrame, params: ExactDedupParams | None = None) -> StageResult:
    params = params or ExactDedupParams()
    keyed = records.with_columns(dedup_keys(records, params.normalization))
    keyed = keyed.with_columns(
        pl.col(ID).first().over("key").alias("_first"),
        pl.len().over("key").cast(pl.Int64).alias("exact_copies"),
    )
    is_first = keyed["_first"] == keyed[ID]
    kept = records.filter(is_first)
    dropped = keyed.filter(~is_first)
    rejects = rejects_from(
        dropped,
        STAGE,
        REASON,
        detail=pl.format("same normalized content as {}", pl.col("_first")),
        duplicate_of=pl.col("_first"),
    )
    annotations = keyed.select(ID, "exact_copies")
    return StageResult(STAGE, params.as_dict(), records.height, kept, rejects, annotations)
