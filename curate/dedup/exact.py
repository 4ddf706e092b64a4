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

from curate.records.normalize import TextNormalization
from curate.records.schema import ID, INPUT, INSTRUCTION, KIND, KIND_TEXT, MESSAGES, OUTPUT, TEXT, rejects_from
from curate.stages.result import StageResult

STAGE = "exact_dedup"
REASON = "exact_duplicate"
_SEP = "\x1f"


@dataclass(frozen=True)
class ExactDedupParams:
    normalization: TextNormalization = field(default_factory=TextNormalization)

    def as_dict(self) -> dict[str, Any]:
        return {"normalization": self.normalization.as_dict()}


def dedup_keys(records: pl.DataFrame, normalization: TextNormalization, every_output: bool = False) -> pl.Series:
    """The normalized comparison key of every record.

    Two instruction records can only be duplicates if their instructions and inputs match,
    so outputs (the long field) are normalized only for records whose instruction and input
    are shared with another; every other record gets a key unique to it (its tagged id).
    ``every_output``: every instruction record's full key instead (out-of-core dedup sees one
    shard at a time, so it cannot tell which instructions are shared across the corpus).
    """
    whole_text = ((records[KIND] == KIND_TEXT) | records[MESSAGES].is_not_null()).alias("whole")
    key = pl.Series("key", [None] * records.height, dtype=pl.String)
    rows = whole_text.arg_true()
    if rows.len():
        key = key.scatter(rows, normalization.series(records[TEXT].gather(rows)))
    rows = (~whole_text).arg_true()
    if rows.len():
        part = records.select(INSTRUCTION, INPUT, OUTPUT, ID).gather(rows)
        head = pl.DataFrame([normalization.series(part[INSTRUCTION]), normalization.series(part[INPUT])])
        head = head.select(pl.concat_str(pl.all(), separator=_SEP)).to_series()
        shared = pl.repeat(True, head.len(), eager=True) if every_output else head.is_duplicated()
        joined = ("\x00unique:" + part[ID]).alias("key")
        if shared.any():
            candidates = shared.arg_true()
            output = normalization.series(part[OUTPUT].gather(candidates))
            full = pl.DataFrame([head.gather(candidates), output]).select(pl.concat_str(pl.all(), separator=_SEP))
            joined = joined.scatter(candidates, full.to_series())
        key = key.scatter(rows, joined)
    return key.alias("key")


def exact_duplicates(records: pl.DataFrame, params: ExactDedupParams | None = None) -> StageResult:
    params = params or ExactDedupParams()
    keys = dedup_keys(records, params.normalization)
    # Group on a 64-bit hash of the key (fast), then confirm every match on the key itself,
    # so a hash collision can never reject a record that is not a duplicate.
    digest = keys.hash(seed=0).alias("_h")
    frame = pl.DataFrame([records[ID], digest, keys])
    first = frame.select(pl.col(ID).first().over("_h").alias("_first"), pl.col("key").first().over("_h").alias("_fk"))
    if not (first["_fk"] == keys).all():
        first = frame.select(pl.col(ID).first().over("key").alias("_first"))
    first_id = first["_first"]
    copies = frame.select(pl.len().over("_h" if "_fk" in first.columns else "key").cast(pl.Int64)).to_series()
    kept, rejects, annotations = first_occurrences(records, first_id, copies)
    return StageResult(STAGE, params.as_dict(), records.height, kept, rejects, annotations)


def first_occurrences(
    records: pl.DataFrame, first_id: pl.Series, copies: pl.Series
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(kept, rejects, annotations) given each record's first copy's id and its number of copies: a record
    is kept when it is its own first copy; the others are rejects with ``duplicate_of`` that id."""
    is_first = first_id == records[ID]
    kept = records.filter(is_first)
    dropped = records.filter(~is_first).with_columns(first_id.filter(~is_first).alias("_first"))
    rejects = rejects_from(
        dropped,
        STAGE,
        REASON,
        detail=pl.format("same normalized content as {}", pl.col("_first")),
        duplicate_of=pl.col("_first"),
    )
    return kept, rejects, pl.DataFrame([records[ID], copies.alias("exact_copies")])
