"""Score a deduplication against a planted benchmark (``planted-dedup-dev`` and its kind).

The benchmark holds source texts, one perturbed copy of each with a known word 5-gram
Jaccard (``true_jaccard``), and distractors. Recall at 0.8 is the share of copies with
Jaccard >= 0.8 that share their source's cluster; the false merge rate is the share of
records clustered with anything they were not planted with, where copies with Jaccard < 0.5
that join their source count as wrong too.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl

from curate.dedup.lsh import collision_probability
from curate.records.schema import KIND_TEXT, conform

BUCKETS = [0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]


def planted_records(frame: pl.DataFrame) -> pl.DataFrame:
    """The benchmark's rows as records (their own ids, kind text)."""
    return conform(
        frame.select(
            pl.col("id").cast(pl.String),
            pl.lit("planted").alias("source"),
            pl.col("id").cast(pl.String).alias("source_id"),
            pl.lit(KIND_TEXT).alias("kind"),
            pl.col("text"),
        )
    )


def score(frame: pl.DataFrame, clusters: pl.DataFrame, bands: int, rows: int) -> dict[str, Any]:
    """Recall per Jaccard bucket (beside the S-curve), recall at 0.8 and the false merge rate."""
    data = frame.select(pl.col("id").cast(pl.String), pl.col("copy_of").cast(pl.String), "true_jaccard").join(
        clusters.select("id", "cluster_id"), on="id", how="left"
    )
    cluster_of = dict(zip(data["id"].to_list(), data["cluster_id"].to_list(), strict=True))
    variants = data.filter(pl.col("copy_of").is_not_null() & (pl.col("copy_of") != ""))
    together = [cluster_of[v] == cluster_of.get(s) for v, s in zip(variants["id"], variants["copy_of"], strict=True)]
    variants = variants.with_columns(pl.Series("together", together))

    partner: dict[str, str] = {}
    for v, s, j in zip(variants["id"], variants["copy_of"], variants["true_jaccard"], strict=True):
        if j >= 0.5:
            partner[v], partner[s] = s, v
    members = data.group_by("cluster_id").agg(pl.col("id"))
    wrong = 0
    for ids in members["id"].to_list():
        if len(ids) < 2:
            continue
        for i in ids:
            others = [o for o in ids if o != i]
            if any(partner.get(i) != o for o in others):
                wrong += 1

    rows_out = []
    for lo, hi in itertools.pairwise(BUCKETS):
        bucket = variants.filter((pl.col("true_jaccard") >= lo) & (pl.col("true_jaccard") < hi))
        if bucket.height:
            mid = float(bucket["true_jaccard"].mean())
            rows_out.append(
                {
                    "jaccard": f"[{lo:.2f}, {min(hi, 1.0):.2f})" if hi <= 1.0 else f"[{lo:.2f}, 1.00]",
                    "variants": bucket.height,
                    "recall": round(float(bucket["together"].mean()), 4),
                    "s_curve": round(float(collision_probability(np.array(mid), bands, rows)), 4),
                }
            )
    high = variants.filter(pl.col("true_jaccard") >= 0.8)
    return {
        "recall_j08": round(float(high["together"].mean()), 4) if high.height else None,
        "false_merge_rate": round(wrong / data.height, 4),
        "buckets": rows_out,
    }
