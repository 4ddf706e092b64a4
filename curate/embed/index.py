"""A faiss wrapper: the same code on faiss-gpu (CUDA present) and faiss-cpu.

``VectorIndex`` builds an inner-product index over L2-normalized vectors (so scores are
cosines): exact (``flat``) up to ``exact_limit`` vectors, IVF or HNSW beyond, chosen
automatically or forced. It answers k-NN and range queries. ``kmeans`` clusters with faiss's
seeded k-means. Everything moves to the GPU when faiss has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Kind = Literal["auto", "flat", "ivf", "hnsw"]
EXACT_LIMIT = 200_000


def _faiss() -> Any:
    import faiss

    return faiss


def gpu_count() -> int:
    faiss = _faiss()
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def choose_kind(n: int, kind: Kind = "auto", exact_limit: int = EXACT_LIMIT) -> str:
    """Exact search while it is affordable; IVF beyond (HNSW on request)."""
    if kind != "auto":
        return kind
    return "flat" if n <= exact_limit else "ivf"


@dataclass
class VectorIndex:
    index: Any
    kind: str
    on_gpu: bool
    size: int

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        kind: Kind = "auto",
        exact_limit: int = EXACT_LIMIT,
        use_gpu: bool | None = None,
        seed: int = 0,
        nprobe: int = 16,
    ) -> VectorIndex:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = vectors.shape
        chosen = choose_kind(n, kind, exact_limit)
        if chosen == "flat":
            index = faiss.IndexFlatIP(dim)
        elif chosen == "hnsw":
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = 128
        else:
            nlist = max(1, min(int(4 * np.sqrt(n)), n // 39 or 1))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.seed = seed
            index.train(vectors)
            index.nprobe = min(nprobe, nlist)
        gpu = (gpu_count() > 0) if use_gpu is None else use_gpu
        if gpu and chosen != "hnsw":
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(vectors)
        return cls(index=index, kind=chosen, on_gpu=gpu and chosen != "hnsw", size=n)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions) of the k nearest vectors of each query; -1 where fewer exist."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, self.size))

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each query, (positions, scores) of every vector with inner product >= threshold."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.on_gpu or self.kind == "hnsw":
            scores, positions = self.search(queries, min(self.size, 256))
            return [
                (p[(s >= threshold) & (p >= 0)], s[(s >= threshold) & (p >= 0)])
                for s, p in zip(scores, positions, strict=True)
            ]
        lims, scores, positions = self.index.range_search(queries, threshold)
        return [(positions[lims[i] : lims[i + 1]], scores[lims[i] : lims[i + 1]]) for i in range(len(queries))]


def kmeans(
    vectors: np.ndarray, clusters: int, seed: int = 0, iterations: int = 20, use_gpu: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, assignment) from faiss k-means on normalized vectors (spherical)."""
    faiss = _faiss()
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    clusters = max(1, min(clusters, vectors.shape[0]))
    gpu = (gpu_count() > 0) if use_gpu is None else use_gpu
    model = faiss.Kmeans(
        vectors.shape[1],
        clusters,
        niter=iterations,
        seed=seed,
        spherical=True,
        gpu=gpu,
        verbose=False,
        max_points_per_centroid=100_000,
    )
    model.train(vectors)
    _, assignment = model.index.search(vectors, 1)
    return model.centroids, assignment[:, 0]
