"""Near-duplicate detection: MinHash LSH, verified edges, and clusters kept as data.

The stage, in order:

1. Shingle every record's ``text`` and compute MinHash signatures (:mod:`.minhash`).
2. Collapse records with identical signatures into one node (they are near-copies for sure).
3. Band the nodes' signatures and take candidate pairs from shared band keys (:mod:`.lsh`).
4. Verify each candidate: ``exact`` Jaccard of the shingle sets (default; pairs whose
   estimate is far below the threshold are dropped first) or the signature ``estimate``.
5. Cluster with leaders: nodes are visited best first (the keep policy: ``first`` record,
   ``longest`` text, or highest ``score:<column>``); an unassigned node becomes a leader and
   takes its unassigned verified neighbours. Every member is therefore similar to its
   representative itself, so a chain of weak edges (A~B, B~C, ...) never grows one cluster
   of unrelated documents, as union-find over the edges would.
6. The representative is kept; every other member is rejected as ``near_duplicate`` with
   ``duplicate_of`` and its Jaccard to the representative.

Texts with no shingles (empty or whitespace-only) are singletons. An optional index of
records kept by earlier runs (:mod:`.index`) takes part as leaders that are never rejected.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.dedup.index import NearDupIndex
from curate.dedup.lsh import band_keys, candidate_pairs, optimal_params
from curate.dedup.minhash import (
    ShingleParams,
    Shingles,
    compose_and_sign,
    estimated_jaccard,
    permutations,
    text_token_hashes,
)
from curate.errors import CurateError
from curate.records.schema import ID, SOURCE_ID, TEXT, duplicate_rejects
from curate.stages.result import StageResult

STAGE = "near_dup"
REASON = "near_duplicate"
ESTIMATE_MARGIN = 0.2
_BATCH_ROWS = 131_072


@dataclass(frozen=True)
class NearDedupParams:
    """Near-duplicate settings.

    Attributes:
        threshold: Jaccard similarity at or above which two texts are near-duplicates.
        num_perm: MinHash permutations (signature length).
        seed: seed of the permutations (datasketch's ``seed``).
        bands, rows: LSH banding; None picks them from the threshold and weights.
        fp_weight, fn_weight: weights of false positives and negatives when picking bands.
            Every candidate is verified, so a false positive costs one check while a false
            negative is a missed duplicate: the defaults favour recall (16 bands of 8 rows
            at 0.8 and 128 permutations; datasketch's equal weights give 9 x 13).
        shingles: how texts become shingles.
        verify: ``exact`` (Jaccard of the shingle sets) or ``estimate`` (of the signatures).
        keep: ``first``, ``longest`` or ``score:<annotation column>`` (highest kept).
        max_partners: pairs per bucket member at most (bounds giant buckets).
        giant_cluster: clusters at least this big are listed in the manifest.
    """

    threshold: float = 0.8
    num_perm: int = 128
    seed: int = 1
    bands: int | None = None
    rows: int | None = None
    fp_weight: float = 0.05
    fn_weight: float = 0.95
    shingles: ShingleParams = field(default_factory=ShingleParams)
    verify: Literal["exact", "estimate"] = "exact"
    keep: str = "first"
    max_partners: int = 64
    giant_cluster: int = 100

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise CurateError("--threshold must be strictly between 0 and 1")
        if self.num_perm < 2:
            raise CurateError("--num-perm must be at least 2")
        if (self.bands is None) != (self.rows is None):
            raise CurateError("give both --bands and --rows, or neither")
        if self.bands is not None and (self.bands < 1 or self.rows < 1 or self.bands * self.rows > self.num_perm):
            raise CurateError(f"--bands x --rows must be at most --num-perm ({self.num_perm})")
        if self.verify not in ("exact", "estimate"):
            raise CurateError("--verify must be exact or estimate")
        if not (self.keep in ("first", "longest") or self.keep.startswith("score:")):
            raise CurateError("--keep must be first, longest or score:<column>")

    def banding(self) -> tuple[int, int]:
        if self.bands is not None and self.rows is not None:
            return self.bands, self.rows
        return optimal_params(self.threshold, self.num_perm, self.fp_weight, self.fn_weight)

    def as_dict(self) -> dict[str, Any]:
        bands, rows = self.banding()
        return {**asdict(self), "bands": bands, "rows": rows}


def sign_texts(texts: pl.Series, params: NearDedupParams) -> tuple[Shingles, np.ndarray]:
    """Shingles and signatures of every text.

    Batches of ``_BATCH_ROWS`` texts bound the memory held by a batch's normalized bytes and
    token hashes. Within a batch, numba kernels parallel over texts (:mod:`.minhash`) walk
    and hash the tokens, then mix the shingle hashes and take the minimum of every permutation.
    """
    a, b = permutations(params.num_perm, params.seed)
    sigs = np.empty((texts.len(), params.num_perm), dtype=np.uint32)
    hashes: list[np.ndarray] = []
    offsets = [np.zeros(1, dtype=np.int64)]
    base = 0
    for batch_start in range(0, texts.len(), _BATCH_ROWS):
        batch = texts.slice(batch_start, _BATCH_ROWS)
        th, counts = text_token_hashes(batch, params.shingles)
        out = sigs[batch_start : batch_start + batch.len()]
        shingles, _ = compose_and_sign(th, counts, params.shingles, a, b, out=out)
        del th
        hashes.append(shingles.hashes)
        offsets.append(shingles.offsets[1:] + base)
        base += int(shingles.offsets[-1])
    all_hashes = np.concatenate(hashes) if hashes else np.zeros(0, dtype=np.uint32)
    return Shingles(all_hashes, np.concatenate(offsets)), sigs


def keep_values(records: pl.DataFrame, keep: str, scores: pl.DataFrame | None) -> pl.Series | None:
    """What the keep policy ranks records by, higher first (None for ``first``: input order)."""
    if keep == "first":
        return None
    if keep == "longest":
        return records[TEXT].str.len_chars().fill_null(0).cast(pl.Float64).alias("v")
    column = keep.split(":", 1)[1]
    if scores is None or column not in scores.columns:
        raise CurateError(f"--keep {keep}: no annotation column {column!r} for these records")
    values = records.select(ID).join(scores.select(ID, column), on=ID, how="left", maintain_order="left")
    return values[column].cast(pl.Float64).alias("v")


def _priority(records: pl.DataFrame, keep: str, scores: pl.DataFrame | None) -> np.ndarray:
    """Rank of each record under the keep policy (0 = kept first); ties by input order."""
    values = keep_values(records, keep, scores)
    if values is None:
        return np.arange(records.height)
    order = pl.DataFrame({"i": np.arange(records.height), "v": values})
    ranked = order.sort(["v", "i"], descending=[True, False], nulls_last=True)["i"].to_numpy()
    rank = np.empty(records.height, dtype=np.int64)
    rank[ranked] = np.arange(records.height)
    return rank


class _SortedShingles:
    """Sorted distinct shingle hashes per record, computed on first use."""

    def __init__(self, shingles: Shingles) -> None:
        self._shingles = shingles
        self._cache: dict[int, np.ndarray] = {}

    def __getitem__(self, doc: int) -> np.ndarray:
        found = self._cache.get(doc)
        if found is None:
            found = np.unique(self._shingles.of(doc))
            self._cache[doc] = found
        return found

    def jaccard(self, left: int, right: int) -> float:
        return sorted_set_jaccard(self[left], self[right])


def sorted_set_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sets given as sorted arrays of distinct values (0 when either is empty)."""
    if a.size == 0 or b.size == 0:
        return 0.0
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def signature_band_keys(
    sigs: np.ndarray, rows_of: np.ndarray, bands: int, rows: int, chunk: int = 65_536
) -> np.ndarray:
    """Band keys of the signature rows ``rows_of``, a chunk at a time (no full copy)."""
    keys = np.empty((rows_of.size, bands), dtype=np.uint64)
    for start in range(0, rows_of.size, chunk):
        keys[start : start + chunk] = band_keys(sigs[rows_of[start : start + chunk]], bands, rows)
    return keys


def concat_signed(parts: list[tuple[Shingles, np.ndarray]]) -> tuple[Shingles, np.ndarray]:
    """:func:`sign_texts` of consecutive slices of texts, joined: equal to signing them at once
    (every text's shingles and signature depend on that text alone)."""
    if len(parts) == 1:
        return parts[0]
    offsets, base = [np.zeros(1, dtype=np.int64)], 0
    for shingles, _ in parts:
        offsets.append(shingles.offsets[1:] + base)
        base += int(shingles.offsets[-1])
    hashes = np.concatenate([shingles.hashes for shingles, _ in parts])
    return Shingles(hashes, np.concatenate(offsets)), np.concatenate([sigs for _, sigs in parts])


def near_duplicates(
    records: pl.DataFrame,
    params: NearDedupParams | None = None,
    index: NearDupIndex | None = None,
    scores: pl.DataFrame | None = None,
    signed: tuple[Shingles, np.ndarray] | None = None,
) -> StageResult:
    """``signed``: :func:`sign_texts` of ``records`` computed elsewhere (e.g. per shard on workers)."""
    params = params or NearDedupParams()
    bands, rows = params.banding()
    n = records.height
    shingles, sigs = signed if signed is not None else sign_texts(records[TEXT], params)
    if sigs.shape != (n, params.num_perm):
        raise ValueError(f"signed has {sigs.shape[0]} signatures of {sigs.shape[1]}; need {n} of {params.num_perm}")
    counts = shingles.counts
    sets = _SortedShingles(shingles)
    rank = _priority(records, params.keep, scores)
    ids = records[ID].to_list()

    # Nodes: one per distinct signature among texts with shingles (identical signatures are
    # certain near-copies); index entries, when there is an index, are nodes 0..n_prior-1.
    has = np.flatnonzero(counts > 0)
    full_key = signature_band_keys(sigs, has, 1, params.num_perm)[:, 0]
    docs = pl.DataFrame({"doc": has, "key": full_key, "rank": rank[has]})
    nodes = (
        docs.group_by("key", maintain_order=True)
        .agg(
            pl.col("doc").first().alias("first"),
            pl.col("doc").sort_by("rank").first().alias("best_doc"),
            pl.col("rank").min().alias("best"),
        )
        .with_row_index("node")
    )
    node_first = nodes["first"].to_numpy().astype(np.int64)
    node_best_doc = nodes["best_doc"].to_numpy().astype(np.int64)
    node_of_has = docs.join(nodes.select("key", "node"), on="key", how="left", maintain_order="left")["node"]
    node_of_has = node_of_has.to_numpy().astype(np.int64)

    if index is not None:
        prior_ids, prior_sigs, prior_pairs = index.candidates(sigs[node_first], exclude=set(ids))
    else:
        prior_ids, prior_sigs, prior_pairs = [], np.zeros((0, params.num_perm), np.uint32), np.zeros((0, 2), np.int64)
    n_prior = len(prior_ids)

    def node_signatures(which: np.ndarray) -> np.ndarray:
        out = np.empty((which.size, params.num_perm), dtype=np.uint32)
        from_prior = which < n_prior
        out[from_prior] = prior_sigs[which[from_prior]]
        out[~from_prior] = sigs[node_first[which[~from_prior] - n_prior]]
        return out

    keys = signature_band_keys(sigs, node_first, bands, rows)
    pairs = candidate_pairs(keys, np.arange(node_first.size), params.max_partners)
    if n_prior:
        pairs = np.concatenate([prior_pairs[:, ::-1] + np.array([0, n_prior]), pairs + n_prior])
    estimate = np.zeros(len(pairs))
    for i in range(0, len(pairs), 65_536):
        chunk = pairs[i : i + 65_536]
        estimate[i : i + 65_536] = estimated_jaccard(node_signatures(chunk[:, 0]), node_signatures(chunk[:, 1]))

    edges: dict[int, list[tuple[int, float]]] = defaultdict(list)
    verified = 0
    for (left, right), est in zip(pairs.tolist(), estimate.tolist(), strict=True):
        if params.verify == "exact" and left >= n_prior:
            if est < params.threshold - ESTIMATE_MARGIN:
                continue
            similarity = sets.jaccard(int(node_first[left - n_prior]), int(node_first[right - n_prior]))
        else:
            similarity = est
        if similarity >= params.threshold:
            edges[left].append((right, similarity))
            edges[right].append((left, similarity))
            verified += 1

    # Leaders: index nodes first (already kept), then nodes by their best record's rank.
    leader = np.arange(n_prior + node_first.size)
    assigned = np.zeros(leader.size, dtype=bool)
    by_rank = np.argsort(nodes["best"].to_numpy(), kind="stable") + n_prior
    for node in [*range(n_prior), *by_rank.tolist()]:
        if assigned[node] or node not in edges:
            continue
        assigned[node] = True
        for neighbour, _ in sorted(edges[node], key=lambda e: (-e[1], e[0])):
            if not assigned[neighbour] and neighbour >= n_prior:
                assigned[neighbour] = True
                leader[neighbour] = node

    # A record's representative: the best record of its leader node (or -1 - index entry).
    rep_of_node = np.where(leader < n_prior, -1 - leader, node_best_doc[np.maximum(leader - n_prior, 0)])
    cluster = np.arange(n)
    cluster[has] = rep_of_node[node_of_has + n_prior]
    members = np.flatnonzero(cluster != np.arange(n))

    duplicate_of: list[str | None] = [None] * n
    similarity_of: list[float | None] = [None] * n
    for doc in members.tolist():
        rep = int(cluster[doc])
        if rep < 0:
            duplicate_of[doc] = prior_ids[-1 - rep]
            similarity_of[doc] = float(estimated_jaccard(sigs[doc], prior_sigs[-1 - rep]))
        else:
            duplicate_of[doc] = ids[rep]
            similarity_of[doc] = (
                sets.jaccard(doc, rep) if params.verify == "exact" else float(estimated_jaccard(sigs[doc], sigs[rep]))
            )

    cluster_ids = [prior_ids[-1 - c] if c < 0 else ids[c] for c in cluster.tolist()]
    annotations = pl.DataFrame(
        {
            ID: records[ID],
            SOURCE_ID: records[SOURCE_ID],
            "cluster_id": pl.Series(cluster_ids, dtype=pl.String),
            "duplicate_of": pl.Series(duplicate_of, dtype=pl.String),
            "similarity": pl.Series(similarity_of, dtype=pl.Float64),
        }
    )
    sizes = annotations.group_by("cluster_id").len("size")
    if prior_ids:
        from_index = pl.col("cluster_id").is_in(prior_ids).cast(pl.UInt32)
        sizes = sizes.with_columns((pl.col("size") + from_index).alias("size"))
    annotations = (
        annotations.join(sizes, on="cluster_id", how="left", maintain_order="left")
        .rename({"size": "cluster_size"})
        .select(ID, SOURCE_ID, "cluster_id", pl.col("cluster_size").cast(pl.Int64), "duplicate_of", "similarity")
    )

    is_member = np.zeros(n, dtype=bool)
    is_member[members] = True
    mask = pl.Series(is_member)
    rejects = duplicate_rejects(records, annotations, mask, STAGE, REASON, "jaccard")
    multi = sizes.filter(pl.col("size") > 1).sort(["size", "cluster_id"], descending=[True, False])
    stats = {
        "bands": bands,
        "rows": rows,
        "no_shingles": int((counts == 0).sum()),
        "truncated": int((counts >= params.shingles.max_shingles).sum()),
        "nodes": int(node_first.size),
        "index_candidates": n_prior,
        "candidate_pairs": len(pairs),
        "verified_edges": verified,
        "clusters_with_duplicates": multi.height,
        "largest_clusters": multi.head(5).rows(named=True),
        "giant_clusters": multi.filter(pl.col("size") >= params.giant_cluster).rows(named=True),
    }
    result = StageResult(STAGE, params.as_dict(), n, records.filter(~mask), rejects, annotations)
    result.stats = stats
    result.signatures = sigs
    return result


def add_to_index(index: NearDupIndex, result: StageResult) -> int:
    """Add the records this stage kept to the index (before the run commits); returns how many."""
    keep = result.annotations["duplicate_of"].is_null()
    ids = result.annotations[ID].filter(keep).to_list()
    index.add(ids, result.signatures[keep.to_numpy()])
    return len(ids)
