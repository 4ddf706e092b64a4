"""Semantic deduplication in the SemDeDup style, with the same reject contract as MinHash.

Embeddings are clustered with k-means; inside each cluster, pairs at or above a cosine
``threshold`` are near-duplicates in meaning. Within a group of such records one is kept by
``keep``: ``hard`` (farthest from the centroid, the default in SemDeDup and NeMo Curator),
``easy`` (closest) or ``first`` (input order). As in the MinHash stage, a representative
takes only records that are themselves above the threshold to it, so no chains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.embed.index import kmeans
from curate.records.schema import ID, SOURCE_ID, duplicate_rejects
from curate.stages.result import StageResult

STAGE = "semdedup"
REASON = "semantic_duplicate"


@dataclass(frozen=True)
class SemDedupParams:
    """Attributes:
    threshold: cosine at or above which two records are semantic duplicates.
    clusters: k-means clusters (None: about one per 100 records, at least 1).
    keep: ``hard``, ``easy`` or ``first``.
    seed: k-means seed.
    """

    threshold: float = 0.95
    clusters: int | None = None
    keep: Literal["hard", "easy", "first"] = "hard"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def semantic_duplicates(
    records: pl.DataFrame, vectors: np.ndarray, params: SemDedupParams | None = None
) -> StageResult:
    params = params or SemDedupParams()
    n = records.height
    clusters = params.clusters or max(1, n // 100)
    rep = np.arange(n)
    similarity = np.full(n, np.nan)
    cluster_of = np.zeros(n, dtype=np.int64)
    if n > 1:
        centroids, cluster_of = kmeans(vectors, clusters, seed=params.seed)
        to_centroid = (vectors * centroids[cluster_of]).sum(axis=1)
        order_key = {"hard": to_centroid, "easy": -to_centroid, "first": np.zeros(n)}[params.keep]
        for cluster in np.unique(cluster_of):
            members = np.flatnonzero(cluster_of == cluster)
            if members.size < 2:
                continue
            members = members[np.lexsort((members, order_key[members]))]
            sims = vectors[members] @ vectors[members].T
            taken = np.zeros(members.size, dtype=bool)
            for i in range(members.size):
                if taken[i]:
                    continue
                taken[i] = True
                close = np.flatnonzero(~taken & (sims[i] >= params.threshold))
                taken[close] = True
                rep[members[close]] = members[i]
                similarity[members[close]] = sims[i, close]
    ids = records[ID].to_list()
    is_dup = rep != np.arange(n)
    duplicate_of = [ids[r] if d else None for r, d in zip(rep.tolist(), is_dup.tolist(), strict=True)]
    annotations = pl.DataFrame(
        {
            ID: records[ID],
            SOURCE_ID: records[SOURCE_ID],
            "semantic_cluster": pl.Series(cluster_of, dtype=pl.Int64),
            "duplicate_of": pl.Series(duplicate_of, dtype=pl.String),
            "similarity": pl.Series(np.where(is_dup, similarity, np.nan), dtype=pl.Float64).fill_nan(None),
        }
    )
    mask = pl.Series(is_dup)
    rejects = duplicate_rejects(records, annotations, mask, STAGE, REASON, "cosine")
    result = StageResult(
        STAGE, {**params.as_dict(), "clusters": clusters}, n, records.filter(~mask), rejects, annotations
    )
    result.stats = {"clusters": clusters, "duplicates": int(is_dup.sum())}
    return result
