"""Selection: choose a subset by score, at random, by length, or for quality and diversity.

Every strategy is deterministic for the same input, parameters and seed; ties break by id.
A selection is a stage like any other: the chosen records are kept, every other record is
rejected as ``not_selected`` with its rank and score in ``detail``, so a selection is its own
run directory, card and all.

* ``threshold``: score at or above ``min`` (AlpaGasus keeps ratings >= 4.5).
* ``top_k``: the ``n`` best by score.
* ``random``: ``n`` records by a seeded hash of their id (the same size control for ablations).
* ``longest``: the ``n`` longest responses, in words (the "Long Is More" baseline).
* ``diverse``: DEITA-style: best score first, skipping any record within ``max_cosine`` of one
  already chosen, until ``n`` (needs embeddings).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.schema import ID, KIND, KIND_TEXT, OUTPUT, TEXT, rejects_from
from curate.stage import StageResult

STAGE = "select"
REASON = "not_selected"
Strategy = Literal["threshold", "top_k", "random", "longest", "diverse"]


@dataclass(frozen=True)
class SelectParams:
    """Attributes:
    strategy: one of ``threshold``, ``top_k``, ``random``, ``longest``, ``diverse``.
    n: how many to keep (all strategies but ``threshold``).
    by: the score column (``threshold``, ``top_k``, ``diverse``).
    min: the lowest score kept (``threshold``).
    seed: the seed of ``random``.
    max_cosine: ``diverse`` skips records this close to one already chosen.
    """

    strategy: Strategy = "top_k"
    n: int | None = None
    by: str | None = None
    min: float | None = None
    seed: int = 0
    max_cosine: float = 0.9

    def __post_init__(self) -> None:
        if self.strategy not in ("threshold", "top_k", "random", "longest", "diverse"):
            raise CurateError(f"unknown selection strategy {self.strategy!r}")
        if self.strategy == "threshold" and (self.by is None or self.min is None):
            raise CurateError("--strategy threshold needs --by COLUMN and --min VALUE")
        if self.strategy != "threshold" and (self.n is None or self.n < 0):
            raise CurateError(f"--strategy {self.strategy} needs --n (a count, 0 or more)")
        if self.strategy in ("top_k", "diverse") and self.by is None:
            raise CurateError(f"--strategy {self.strategy} needs --by COLUMN (a score)")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def response_words(records: pl.DataFrame) -> pl.Series:
    """Words of the response: ``output`` for instruction records, ``text`` otherwise."""
    response = pl.when(pl.col(KIND) == KIND_TEXT).then(pl.col(TEXT)).otherwise(pl.col(OUTPUT))
    return records.select(response.fill_null("").str.count_matches(r"\S+").alias("response_words")).to_series()


def seeded_order(ids: pl.Series, seed: int) -> np.ndarray:
    """A permutation of positions fixed by (seed, id): the same on every machine and run."""
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids.to_list()]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def _ranked(records: pl.DataFrame, score: pl.Series) -> np.ndarray:
    """Positions by score, best first; ties (and nulls, last) by id."""
    frame = pl.DataFrame({"i": np.arange(records.height), "s": score.cast(pl.Float64), "id": records[ID]})
    return frame.sort(["s", "id"], descending=[True, False], nulls_last=True)["i"].to_numpy()


def diverse_pick(order: np.ndarray, vectors: np.ndarray, n: int, max_cosine: float) -> np.ndarray:
    """Walk ``order``; keep a record unless it is within ``max_cosine`` of one kept already."""
    chosen: list[int] = []
    kept = np.zeros((min(n, len(order)), vectors.shape[1]), dtype=np.float32)
    for position in order.tolist():
        if len(chosen) >= n:
            break
        if chosen and float((kept[: len(chosen)] @ vectors[position]).max()) >= max_cosine:
            continue
        kept[len(chosen)] = vectors[position]
        chosen.append(position)
    return np.array(chosen, dtype=np.int64)


def select(
    records: pl.DataFrame,
    params: SelectParams,
    scores: pl.DataFrame | None = None,
    vectors: np.ndarray | None = None,
) -> StageResult:
    """Apply a strategy; ``scores`` holds ``id`` and the ``by`` column, ``vectors`` the embeddings."""
    score = None
    if params.by is not None:
        if params.by == "response_words":
            score = response_words(records)
        elif scores is None or params.by not in scores.columns:
            raise CurateError(f"no score column {params.by!r} for these records (annotate them first)")
        else:
            score = records.select(ID).join(scores.select(ID, params.by), on=ID, how="left", maintain_order="left")[
                params.by
            ]
    n = params.n if params.n is not None else records.height
    if params.strategy == "threshold":
        chosen = np.flatnonzero((score.cast(pl.Float64) >= params.min).fill_null(False).to_numpy())
        order = _ranked(records, score)
    elif params.strategy == "top_k":
        order = _ranked(records, score)
        chosen = order[:n]
    elif params.strategy == "random":
        order = seeded_order(records[ID], params.seed)
        chosen = order[:n]
    elif params.strategy == "longest":
        score = response_words(records)
        order = _ranked(records, score)
        chosen = order[:n]
    else:
        if vectors is None or len(vectors) != records.height:
            raise CurateError("--strategy diverse needs an embedding for every record (run `curate embed` first)")
        order = _ranked(records, score)
        chosen = diverse_pick(order, vectors, n, params.max_cosine)
    keep = np.zeros(records.height, dtype=bool)
    keep[chosen] = True
    rank = np.empty(records.height, dtype=np.int64)
    rank[order] = np.arange(records.height)
    mask = pl.Series(keep)
    annotations = pl.DataFrame(
        {
            ID: records[ID],
            "selected": mask,
            "select_rank": pl.Series(rank + 1, dtype=pl.Int64),
            **({"select_score": score.cast(pl.Float64)} if score is not None else {}),
        }
    )
    dropped = records.filter(~mask).with_columns(annotations.filter(~mask)["select_rank"].alias("_rank"))
    rejects = rejects_from(dropped, STAGE, REASON, detail=pl.format(f"rank {{}} under {params.strategy}", "_rank"))
    # The chosen records keep their input order (shards stay comparable with the input).
    result = StageResult(STAGE, params.as_dict(), records.height, records.filter(mask), rejects, annotations)
    result.stats = {"selected": int(keep.sum())}
    if vectors is not None and keep.sum() > 1:
        result.stats.update(diversity(vectors[keep], vectors, params.seed))
    return result


def diversity(chosen: np.ndarray, pool: np.ndarray, seed: int, clusters: int = 100) -> dict[str, float]:
    """Mean pairwise cosine and k-means clusters hit, for the chosen set and a random one of its size."""
    from scorers.vectors import kmeans

    rng = np.random.default_rng(seed)
    random = pool[rng.choice(len(pool), size=len(chosen), replace=False)]
    centroids, _ = kmeans(pool, min(clusters, len(pool)), seed=seed)

    def mean_cosine(v: np.ndarray) -> float:
        total = v.sum(axis=0)
        return float((total @ total - len(v)) / (len(v) * (len(v) - 1)))

    def hit(v: np.ndarray) -> int:
        return int(np.unique((v @ centroids.T).argmax(axis=1)).size)

    return {
        "mean_pairwise_cosine": round(mean_cosine(chosen), 4),
        "random_mean_pairwise_cosine": round(mean_cosine(random), 4),
        "clusters_hit": hit(chosen),
        "random_clusters_hit": hit(random),
        "clusters": len(centroids),
    }
