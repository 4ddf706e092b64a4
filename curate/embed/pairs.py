"""Prompt and response embeddings of instruction records, and one vector per record for diversity."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from curate.embed.encoder import embed_records
from curate.records.schema import ID, INPUT, INSTRUCTION, OUTPUT


def prompt_response(records: pl.DataFrame) -> pl.DataFrame:
    """``id``, ``prompt`` (instruction, then input when there is one) and ``response`` (output)."""
    instruction, given = pl.col(INSTRUCTION).fill_null(""), pl.col(INPUT).fill_null("")
    return records.select(
        ID,
        pl.when(given != "").then(instruction + "\n\n" + given).otherwise(instruction).alias("prompt"),
        pl.col(OUTPUT).fill_null("").alias("response"),
    )


def pair_vectors(records: pl.DataFrame, embedder: Any, cache: Any = None, progress: bool = False):
    """Prompt and response embeddings (record order), from and into the cache (for diversity)."""
    pairs = prompt_response(records)
    prompt, _ = embed_records(pairs, embedder, "prompt", cache, progress)
    response, _ = embed_records(pairs, embedder, "response", cache, progress)
    return prompt, response


def record_vectors(prompt: np.ndarray, response: np.ndarray) -> np.ndarray:
    """One unit vector per record, the normalized sum of its prompt and response embeddings (for diversity)."""
    both = prompt.astype(np.float32) + response.astype(np.float32)
    return both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)
