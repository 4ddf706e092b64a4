"""The one record model every stage reads and writes.

A record is a row of a polars frame with these columns, in this order. Stages add
annotation columns beside them (saved under ``annotations/``) and never change them.

=============  ==========================  ==================================================
column         dtype                       meaning
=============  ==========================  ==================================================
id             String                      stable content id (see :mod:`curate.records.ids`)
source         String                      dataset name (``alpaca``, a file stem, ...)
source_id      String                      the source's own id, or its row/line number
kind           String                      ``instruction`` or ``text``
instruction    String (null for text)      the task
input          String (null for text)      optional context; ``""`` when the task has none
output         String (null for text)      the response
text           String                      pretraining text; for instructions the derived
                                           ``instruction\\n\\ninput\\n\\noutput`` used by
                                           dedup and embedding
messages       List(Struct(role, content)) the whole chat for multi-turn sources, else null
license        String                      licence of the source
meta           String (JSON object)        source-specific fields (Dolly category, ...)
=============  ==========================  ==================================================

Rejected records keep all of these plus ``stage``, ``reason``, ``detail``, ``location``
(``file:line`` where known) and ``duplicate_of`` (the kept id, for dedup stages).
"""

from __future__ import annotations

import polars as pl

ID = "id"
SOURCE = "source"
SOURCE_ID = "source_id"
KIND = "kind"
INSTRUCTION = "instruction"
INPUT = "input"
OUTPUT = "output"
TEXT = "text"
MESSAGES = "messages"
LICENSE = "license"
META = "meta"

KIND_INSTRUCTION = "instruction"
KIND_TEXT = "text"

MESSAGE_DTYPE = pl.Struct({"role": pl.String, "content": pl.String})

RECORD_SCHEMA: dict[str, pl.DataType] = {
    ID: pl.String(),
    SOURCE: pl.String(),
    SOURCE_ID: pl.String(),
    KIND: pl.String(),
    INSTRUCTION: pl.String(),
    INPUT: pl.String(),
    OUTPUT: pl.String(),
    TEXT: pl.String(),
    MESSAGES: pl.List(MESSAGE_DTYPE),
    LICENSE: pl.String(),
    META: pl.String(),
}
RECORD_COLUMNS = list(RECORD_SCHEMA)

STAGE = "stage"
REASON = "reason"
DETAIL = "detail"
LOCATION = "location"
DUPLICATE_OF = "duplicate_of"

REJECT_SCHEMA: dict[str, pl.DataType] = {
    **RECORD_SCHEMA,
    STAGE: pl.String(),
    REASON: pl.String(),
    DETAIL: pl.String(),
    LOCATION: pl.String(),
    DUPLICATE_OF: pl.String(),
}
REJECT_COLUMNS = list(REJECT_SCHEMA)


def empty_records() -> pl.DataFrame:
    return pl.DataFrame(schema=RECORD_SCHEMA)


def empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_SCHEMA)


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType] = RECORD_SCHEMA) -> pl.DataFrame:
    """Select the schema's columns in order with their dtypes; missing columns become null."""
    columns = []
    for name, dtype in schema.items():
        if name in frame.columns:
            columns.append(frame[name].cast(dtype))
        else:
            columns.append(pl.Series(name, [None] * frame.height, dtype=dtype))
    return pl.DataFrame(columns)


def rejects_from(
    records: pl.DataFrame,
    stage: str,
    reason: str | pl.Expr,
    detail: str | pl.Expr | None = None,
    duplicate_of: pl.Expr | None = None,
) -> pl.DataFrame:
    """Turn rejected records into reject rows: the record plus why it went."""

    def as_expr(value: str | pl.Expr | None) -> pl.Expr:
        return value if isinstance(value, pl.Expr) else pl.lit(value, dtype=pl.String)

    frame = records.with_columns(
        as_expr(stage).alias(STAGE),
        as_expr(reason).alias(REASON),
        as_expr(detail).alias(DETAIL),
        (duplicate_of if duplicate_of is not None else pl.lit(None, dtype=pl.String)).alias(DUPLICATE_OF),
    )
    return conform(frame, REJECT_SCHEMA)


def duplicate_rejects(
    records: pl.DataFrame, annotations: pl.DataFrame, mask: pl.Series, stage: str, reason: str, measure: str
) -> pl.DataFrame:
    """Rejects of a dedup stage: the records under ``mask``, with ``duplicate_of`` and a detail
    naming their ``similarity`` (a ``measure`` such as jaccard or cosine) to the kept record."""
    dropped = records.filter(mask).with_columns(
        annotations.filter(mask).select(pl.col(DUPLICATE_OF).alias("_rep"), pl.col("similarity").alias("_sim"))
    )
    return rejects_from(
        dropped,
        stage,
        reason,
        detail=pl.format(f"{measure} {{}} with {{}}", pl.col("_sim").round(4), pl.col("_rep")),
        duplicate_of=pl.col("_rep"),
    )
