"""LSH banding: choosing bands and rows, band keys, and candidate pairs without all-pairs.

:func:`optimal_params` picks (bands, rows) the way datasketch's ``MinHashLSH`` does: the
pair minimizing ``fp_weight * P(false positive) + fn_weight * P(false negative)``, each the
integral of the banding S-curve below / above the threshold. The integrands are polynomials of
degree ``bands * rows <= num_perm``, so Gauss-Legendre quadrature with ``num_perm // 2 + 1``
nodes gives them exactly, in numpy (no scipy import on a stage command's path). Candidates come from grouping
band keys in polars; a bucket of k documents yields at most ``k * max_partners`` pairs.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import polars as pl

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """The S-curve: chance two documents with this Jaccard share at least one band."""
    return 1.0 - (1.0 - np.power(similarity, rows)) ** bands


@cache
def optimal_params(threshold: float, num_perm: int, fp_weight: float = 0.5, fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false positive and false negative areas."""
    if not 0.0 < threshold < 1.0:
        raise ValueError("threshold must be strictly between 0 and 1")
    if fp_weight < 0 or fn_weight < 0 or fp_weight + fn_weight == 0:
        raise ValueError("weights must be non-negative and not both zero")
    nodes, weights = _legendre(num_perm // 2 + 1)
    below, above = _on_interval(nodes, weights, 0.0, threshold), _on_interval(nodes, weights, threshold, 1.0)
    best, best_error = (0, 0), float("inf")
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = float(below[1] @ (1 - (1 - below[0] ** rows) ** bands))
            fn = float(above[1] @ ((1 - above[0] ** rows) ** bands))
            error = fp * fp_weight + fn * fn_weight
            if error < best_error:
                best, best_error = (bands, rows), error
    return best


@cache
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _on_interval(nodes: np.ndarray, weights: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights moved from [-1, 1] to [lo, hi]."""
    half = (hi - lo) / 2
    return lo + half * (nodes + 1), half * weights


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """A 64-bit key per (document, band) from that band's ``rows`` signature values."""
    if bands * rows > signatures.shape[1]:
        raise ValueError(f"bands x rows = {bands * rows} exceeds num_perm = {signatures.shape[1]}")
    keys = np.empty((signatures.shape[0], bands), dtype=np.uint64)
    for band in range(bands):
        h = np.full(signatures.shape[0], ((band + 1) * _GOLDEN) & _MASK64, dtype=np.uint64)
        for value in signatures[:, band * rows : (band + 1) * rows].T:
            h = _splitmix64(h ^ value.astype(np.uint64))
        keys[:, band] = h
    return keys


def candidate_pairs(keys: np.ndarray, nodes: np.ndarray, max_partners: int = 64) -> np.ndarray:
    """Pairs (left, right) of node numbers, left < right, that share a band key.

    ``nodes`` are the numbers of the rows of ``keys``. In a bucket (members in node order),
    each member is paired with the members before it among the first ``max_partners``, so a
    bucket of k members costs O(k * max_partners), never O(k**2). Bands are grouped one at
    a time to bound memory.
    """
    found = []
    for band in range(keys.shape[1]):
        frame = pl.DataFrame({"key": keys[:, band], "node": nodes.astype(np.int64)})
        buckets = (
            frame.group_by("key")
            .agg(pl.col("node").sort())
            .filter(pl.col("node").list.len() > 1)
            .select("node")
            .with_row_index("bucket")
            .explode("node")
            .with_columns(pl.int_range(pl.len()).over("bucket").alias("rank"))
        )
        if buckets.height == 0:
            continue
        heads = buckets.filter(pl.col("rank") < max_partners).rename({"node": "left", "rank": "left_rank"})
        found.append(
            buckets.join(heads, on="bucket").filter(pl.col("left_rank") < pl.col("rank")).select("left", "node")
        )
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return pl.concat(found).unique().sort("left", "node").to_numpy().astype(np.int64)
