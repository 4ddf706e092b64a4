"""The ``embed`` stage: keeps every record and annotates its ``embedding`` (the engine is :mod:`curate.embed`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curate.embed.encoder import Embedder, EmbeddingCache, embed_records
from curate.errors import CurateError
from curate.io.shards import vectors_frame


def embed_stage(
    records: pl.DataFrame,
    embedder: Embedder,
    column: str = "text",
    cache: EmbeddingCache | None = None,
    progress: bool = False,
) -> tuple[Any, np.ndarray]:
    """The ``embed`` stage: keeps every record, annotates ``embedding``; returns (result, vectors)."""
    from curate.records.schema import empty_rejects
    from curate.stages.result import StageResult

    if column not in records.columns:
        raise CurateError(f"cannot embed column {column!r}: records have {', '.join(records.columns)}")
    vectors, stats = embed_records(records, embedder, column, cache, progress)
    annotations = vectors_frame(records["id"].to_list(), "embedding", vectors, pl.Float32)
    params = {
        "model": embedder.settings.model_name(),
        "column": column,
        "key": embedder.key(),
        "max_length": embedder.max_length,
        "batch_size": embedder.batch_size,
    }
    result = StageResult("embed", params, records.height, records, empty_rejects(), annotations)
    result.stats = {
        "device": embedder.device,
        "precision": embedder.precision,
        "check_cosine": embedder.check_cosine,
        "texts": stats.texts,
        "encoded": stats.encoded,
        "from_cache": stats.from_cache,
        "duplicates": stats.duplicates,
        "truncated": stats.truncated,
        "empty": stats.empty,
        "seconds": round(stats.seconds, 2),
    }
    return result, vectors
