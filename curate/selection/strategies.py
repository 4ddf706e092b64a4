"""Selection: choose a subset by score, at random, by length, or for quality and diversity.

Every strategy is deterministic for the same input, parameters and seed; ties break by id.
A selection is a stage like any other: the chosen records are kept, every other record is
rejected as ``not_selected`` with its rank and score in ``detail``, so a selection is its own
run directory, card and all.

* ``threshold``: score at or above ``min`` (AlpaGasus keeps ratings >= 4.5).
* ``top_k``: the ``n`` best by score; with ``min_median_ratio``, the best ``n`` whose median response
  is at least that fraction of the pool's (:func:`median_guarded`): a length guard that keeps a short
  answer the score likes instead of a length floor that drops every short answer.
* ``random``: ``n`` records by a seeded hash of their id (the same size control for ablations).
* ``longest``: the ``n`` longest responses, in words (the "Long Is More" baseline).
* ``diverse``: DEITA-style: best score first, skipping any record within ``max_cosine`` of one
  already chosen, until ``n`` (needs embeddings).
* ``kcenter``: quality-weighted k-center greedy (the LIMA-style 1k): start from the best record,
  then repeatedly add the record maximising ``q(x) * d(x, S)``, where ``d`` is the cosine distance
  ``1 - cos`` to the nearest record already chosen and ``q`` is the record's score percentile
  (in (0, 1], so the formula does not depend on the score's scale). Spreads the choice over the
  embedding space while leaning towards quality (needs embeddings).

Any strategy can be stratified: ``stratify`` names a column (``source``, ``category``, a cluster
id) and ``n`` is split over its values in proportion to their sizes (largest remainder, ties by
value) or equally (``quota="equal"``; groups too small give their share to the others); the
strategy then runs inside each group.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.records.schema import ID, KIND, KIND_TEXT, OUTPUT, SOURCE_ID, TEXT, rejects_from
from curate.stages.result import StageResult

STAGE = "select"
REASON = "not_selected"
Strategy = Literal["threshold", "top_k", "random", "longest", "diverse", "kcenter"]
STRATEGIES = ("threshold", "top_k", "random", "longest", "diverse", "kcenter")
NEEDS_VECTORS = ("diverse", "kcenter")


@dataclass(frozen=True)
class SelectParams:
    """Attributes:
    strategy: one of ``threshold``, ``top_k``, ``random``, ``longest``, ``diverse``, ``kcenter``.
    n: how many to keep (all strategies but ``threshold``).
    by: the score column (``threshold``, ``top_k``, ``diverse``).
    min: the lowest score kept (``threshold``).
    seed: the seed of ``random``.
    max_cosine: ``diverse`` skips records this close to one already chosen.
    stratify: a record column whose values get quotas of ``n`` (None: no strata).
    quota: ``proportional`` (to group size) or ``equal``.
    candidates: ``diverse`` and ``kcenter`` choose among this many best by score (None: all), so
        diversity spreads the choice over good records instead of reaching for outliers; only
        the candidates need embeddings.
    min_median_ratio: ``top_k`` keeps the selection's median response (words) at or above this
        fraction of the pool's median (of each group's, when stratified; None: no guard; see
        :func:`median_guarded`). A record it passes over is rejected with that said in its detail.
    """

    strategy: Strategy = "top_k"
    n: int | None = None
    by: str | None = None
    min: float | None = None
    seed: int = 0
    max_cosine: float = 0.9
    stratify: str | None = None
    quota: Literal["proportional", "equal"] = "proportional"
    candidates: int | None = None
    min_median_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CurateError(f"unknown selection strategy {self.strategy!r}")
        if self.strategy == "threshold" and (self.by is None or self.min is None):
            raise CurateError("--strategy threshold needs --by COLUMN and --min VALUE")
        if self.strategy != "threshold" and (self.n is None or self.n < 0):
            raise CurateError(f"--strategy {self.strategy} needs --n (a count, 0 or more)")
        if self.strategy in ("top_k", "diverse", "kcenter") and self.by is None:
            raise CurateError(f"--strategy {self.strategy} needs --by COLUMN (a score)")
        if self.quota not in ("proportional", "equal"):
            raise CurateError(f"unknown quota {self.quota!r}: proportional or equal")
        if self.candidates is not None and (self.strategy not in NEEDS_VECTORS or self.candidates < 1):
            raise CurateError("--candidates (a count, 1 or more) is for --strategy diverse or kcenter")
        if self.min_median_ratio is not None and (self.strategy != "top_k" or not 0 < self.min_median_ratio <= 1):
            raise CurateError("--min-median-ratio (a fraction in (0, 1]) is for --strategy top_k")
        if self.stratify is not None and self.strategy == "threshold":
            raise CurateError("--stratify needs a count (--n); a threshold has no quotas")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def response_words(records: pl.DataFrame) -> pl.Series:
    """Words of the response: ``output`` for instruction records, ``text`` otherwise."""
    response = pl.when(pl.col(KIND) == KIND_TEXT).then(pl.col(TEXT)).otherwise(pl.col(OUTPUT))
    return records.select(response.fill_null("").str.count_matches(r"\S+").alias("response_words")).to_series()


def stored_scores(by: str | None, annotation_column: Callable[[str], pl.DataFrame | None]) -> pl.DataFrame | None:
    """The annotation column a selection ranks by (``id`` and ``by``), or None when there is no ``by`` or
    it is ``response_words``, which the selection counts itself from the records."""
    if not by or by == "response_words":
        return None
    return annotation_column(by)


def seeded_order(ids: pl.Series, seed: int) -> np.ndarray:
    """A permutation of positions fixed by (seed, id): the same on every machine and run."""
    keys = [hashlib.sha256(f"{seed}:{i}".encode()).hexdigest() for i in ids.to_list()]
    return np.array(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64)


def _ranked(records: pl.DataFrame, score: pl.Series) -> np.ndarray:
    """Positions by score, best first; ties (and nulls, last) by id."""
    frame = pl.DataFrame({"i": np.arange(records.height), "s": score.cast(pl.Float64), "id": records[ID]})
    return frame.sort(["s", "id"], descending=[True, False], nulls_last=True)["i"].to_numpy()


def median_guarded(order: np.ndarray, words: np.ndarray, n: int, min_median_ratio: float) -> np.ndarray:
    """The first ``n`` of ``order`` (positions, best first) with at most ``(n - 1) // 2`` responses
    shorter than ``min_median_ratio`` times the median of ``words`` (every record's response words), so
    the selection's median is at least that: shorter answers past the cap are passed over, and taken
    back (best first) only if the longer ones run out.

    A floor would drop every short answer, the right ones with the wrong; the guard lets the score
    keep the short answers it likes best and fills the rest with long ones."""
    n = min(n, len(order))
    if n == 0:
        return order[:0]
    short = words[order] < min_median_ratio * float(np.median(words))
    taken = ~short | (np.cumsum(short) <= (n - 1) // 2)
    chosen = order[taken][:n]
    if len(chosen) < n:
        chosen = np.concatenate([chosen, order[~taken][: n - len(chosen)]])
    return chosen


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


def kcenter_pick(score: np.ndarray, vectors: np.ndarray, n: int, order: np.ndarray) -> np.ndarray:
    """Quality-weighted k-center greedy: maximise ``q * (1 - max cos to chosen)``; ties by ``order``."""
    size = len(order)
    n = min(n, size)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # q: score percentile in (0, 1] (best = 1); position in ``order`` breaks ties deterministically.
    position = np.empty(size, dtype=np.int64)
    position[order] = np.arange(size)
    q = (size - position) / size
    vectors = vectors.astype(np.float32, copy=False)
    nearest = np.full(size, -np.inf, dtype=np.float32)
    chosen = [int(order[0])]
    taken = np.zeros(size, dtype=bool)
    taken[order[0]] = True
    for _ in range(n - 1):
        np.maximum(nearest, vectors @ vectors[chosen[-1]], out=nearest)
        gain = q * (1.0 - nearest.astype(np.float64))
        gain[taken] = -np.inf
        best = np.flatnonzero(gain == gain.max())
        pick = int(best[np.argmin(position[best])])
        chosen.append(pick)
        taken[pick] = True
    return np.array(chosen, dtype=np.int64)


def quotas(groups: pl.Series, n: int, quota: str) -> dict[Any, int]:
    """How many of ``n`` each group gets: proportional (largest remainder) or equal (water-filling)."""
    sizes = groups.value_counts(sort=False).sort(groups.name, nulls_last=True)
    names, counts = sizes[groups.name].to_list(), sizes["count"].to_list()
    n = min(n, sum(counts))
    if quota == "equal":
        share = dict.fromkeys(names, 0)
        left = n
        open_groups = list(names)
        while left > 0 and open_groups:
            each, extra = divmod(left, len(open_groups))
            for i, g in enumerate(list(open_groups)):
                room = counts[names.index(g)] - share[g]
                give = min(room, each + (1 if i < extra else 0))
                share[g] += give
                left -= give
            open_groups = [g for g in open_groups if share[g] < counts[names.index(g)]]
        return share
    total = sum(counts)
    exact = [n * c / total for c in counts]
    share = {g: int(e) for g, e in zip(names, exact, strict=True)}
    rest = n - sum(share.values())
    by_remainder = sorted(range(len(names)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in by_remainder[:rest]:
        share[names[i]] += 1
    return share


def _pick(params: SelectParams, records: pl.DataFrame, score, vectors, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(chosen positions, full ranking) of one strategy over ``records``."""
    if params.strategy == "threshold":
        chosen = np.flatnonzero((score.cast(pl.Float64) >= params.min).fill_null(False).to_numpy())
        return chosen, _ranked(records, score)
    if params.strategy == "random":
        order = seeded_order(records[ID], params.seed)
        return order[:n], order
    order = _ranked(records, score)
    if params.strategy == "top_k" and params.min_median_ratio is not None:
        return median_guarded(order, response_words(records).to_numpy(), n, params.min_median_ratio), order
    if params.strategy in ("top_k", "longest"):
        return order[:n], order
    pool = order[: params.candidates] if params.candidates else order
    if params.strategy == "diverse":
        return diverse_pick(pool, vectors, n, params.max_cosine), order
    filled = score.cast(pl.Float64).fill_null(float("-inf")).to_numpy()
    picked = kcenter_pick(filled[pool], vectors[pool], n, np.arange(pool.size))
    return pool[picked], order


def score_series(records: pl.DataFrame, params: SelectParams, scores: pl.DataFrame | None) -> pl.Series | None:
    """The ``by`` score of every record (record order), or None for strategies without one."""
    if params.strategy == "longest" or params.by == "response_words":
        return response_words(records)
    if params.by is None:
        return None
    if scores is None or params.by not in scores.columns:
        raise CurateError(f"no score column {params.by!r} for these records (annotate them first)")
    return records.select(ID).join(scores.select(ID, params.by), on=ID, how="left", maintain_order="left")[params.by]


def needs_vectors(records: pl.DataFrame, params: SelectParams, scores: pl.DataFrame | None) -> np.ndarray:
    """Positions of the records a strategy needs embeddings of: none, the candidates, or all."""
    if params.strategy not in NEEDS_VECTORS:
        return np.zeros(0, dtype=np.int64)
    if params.candidates is None or params.stratify is not None:
        return np.arange(records.height)
    return np.sort(_ranked(records, score_series(records, params, scores))[: params.candidates])


def select(
    records: pl.DataFrame,
    params: SelectParams,
    scores: pl.DataFrame | None = None,
    vectors: np.ndarray | None = None,
    labels: pl.DataFrame | None = None,
) -> StageResult:
    """Apply a strategy; ``scores`` holds ``id`` and the ``by`` column, ``vectors`` the embeddings,
    ``labels`` optional judge decisions (``source_id``, ``label``) for the report."""
    score = score_series(records, params, scores)
    n = params.n if params.n is not None else records.height
    if params.strategy in NEEDS_VECTORS and (vectors is None or len(vectors) != records.height):
        raise CurateError(
            f"--strategy {params.strategy} needs an embedding for every record (run `curate embed` first)"
        )
    share: dict[Any, int] = {}
    if params.stratify is None:
        chosen, order = _pick(params, records, score, vectors, n)
    else:
        if params.stratify not in records.columns:
            raise CurateError(f"cannot stratify by {params.stratify!r}: records have {', '.join(records.columns)}")
        groups = records[params.stratify]
        share = quotas(groups, n, params.quota)
        parts, ranks = [], []
        for group, count in share.items():
            where = np.flatnonzero((groups.is_null() if group is None else groups == group).fill_null(False).to_numpy())
            sub = records[where]
            sub_score = score[where] if score is not None else None
            sub_vectors = vectors[where] if vectors is not None else None
            picked, sub_order = _pick(params, sub, sub_score, sub_vectors, count)
            parts.append(where[picked])
            ranks.append(where[sub_order])
        chosen = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        order = np.concatenate(ranks) if ranks else np.zeros(0, dtype=np.int64)
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
    detail = pl.format(f"rank {{}} under {params.strategy}", "_rank")
    if params.min_median_ratio is not None and params.stratify is None:
        guarded = pl.format("rank {} under top_k, passed over by the median guard", "_rank")
        detail = pl.when(pl.col("_rank") <= n).then(guarded).otherwise(detail)
    rejects = rejects_from(dropped, STAGE, REASON, detail=detail)
    # The chosen records keep their input order (shards stay comparable with the input).
    result = StageResult(STAGE, params.as_dict(), records.height, records.filter(mask), rejects, annotations)
    result.stats = {"selected": int(keep.sum())}
    if share:
        result.stats["quotas"] = {str(k): v for k, v in share.items()}
    result.stats["report"] = selection_report(records, np.flatnonzero(keep), score, params.seed, labels)
    if vectors is not None and keep.sum() > 1:
        embedded = np.linalg.norm(vectors, axis=1) > 0  # with candidates, only they carry embeddings
        result.stats.update(diversity(vectors[keep & embedded], vectors[embedded], params.seed))
    if result.stats["report"].get("warning"):
        result.stats["warning"] = result.stats["report"]["warning"]
    return result


def diversity(chosen: np.ndarray, pool: np.ndarray, seed: int, clusters: int = 100) -> dict[str, float]:
    """Mean pairwise cosine and k-means clusters hit, for the chosen set and a random one of its size."""
    from curate.embed.index import kmeans

    rng = np.random.default_rng(seed)
    random = pool[rng.choice(len(pool), size=len(chosen), replace=False)]
    # faiss wants about 39 points per centroid; fewer clusters for small pools.
    centroids, _ = kmeans(pool, max(1, min(clusters, len(pool) // 39)), seed=seed)

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


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"p10": None, "p50": None, "p90": None, "mean": None}
    p10, p50, p90 = np.quantile(values.astype(np.float64), [0.1, 0.5, 0.9])
    return {
        "p10": round(float(p10), 4),
        "p50": round(float(p50), 4),
        "p90": round(float(p90), 4),
        "mean": round(float(values.mean()), 4),
    }


def selection_report(
    records: pl.DataFrame,
    chosen: np.ndarray,
    score: pl.Series | None,
    seed: int = 0,
    labels: pl.DataFrame | dict[str, pl.DataFrame] | None = None,
) -> dict[str, Any]:
    """What a selection did, beside a random selection of the same size from the same pool.

    ``labels`` (``source_id`` or ``id``, and ``label``; or several such frames by judge name) are judge
    decisions for some records: the report gives the positive rate inside the selection against the pool's
    (the base rate) and the random control's, per judge. Response lengths are reported for both, so that
    "longer" is not mistaken for "better", and ``warning`` says when the selection's median response is
    under half the pool's (a selection that learned "short" instead of "good").
    """
    n = int(chosen.size)
    random_pick = seeded_order(records[ID], seed)[:n]
    words = response_words(records).to_numpy()
    report: dict[str, Any] = {
        "pool": records.height,
        "selected": n,
        "response_words": {
            "selected": _quantiles(words[chosen]),
            "random": _quantiles(words[random_pick]),
            "pool": _quantiles(words),
        },
    }
    if score is not None:
        values = score.cast(pl.Float64).fill_null(float("nan")).to_numpy()
        finite = ~np.isnan(values)
        report["score"] = {
            "selected": _quantiles(values[chosen][finite[chosen]]),
            "random": _quantiles(values[random_pick][finite[random_pick]]),
            "pool": _quantiles(values[finite]),
        }
    warning = length_warning(words[chosen], words)
    if warning:
        report["warning"] = warning
    judges = labels if isinstance(labels, dict) else {"judge": labels} if labels is not None else {}
    rates = {name: judge_rates(records, chosen, random_pick, frame) for name, frame in judges.items() if frame.height}
    if rates:
        report["judge"] = next(iter(rates.values()))
        if isinstance(labels, dict):
            report["judges"] = rates
    return report


def length_warning(selected_words: np.ndarray, pool_words: np.ndarray) -> str | None:
    """A warning when the selection's median response is under half the pool's, else None."""
    if selected_words.size == 0 or pool_words.size == 0:
        return None
    chosen, pool = float(np.median(selected_words)), float(np.median(pool_words))
    if chosen < 0.5 * pool:
        return (
            f"degenerate selection: median response {chosen:g} words, under half the pool's {pool:g} "
            "(the score may reward brevity, not quality)"
        )
    return None


def judge_rates(records: pl.DataFrame, chosen: np.ndarray, random_pick: np.ndarray, labels: pl.DataFrame) -> dict:
    """One judge's positive rate in the pool (base rate), inside the selection and inside the random control."""
    key = SOURCE_ID if SOURCE_ID in labels.columns else ID
    joined = records.select(key).with_row_index("pos").join(labels, on=key, how="inner")
    pos, y = joined["pos"].to_numpy(), joined["label"].cast(pl.Int64).to_numpy()
    in_selection = np.isin(pos, chosen)
    in_random = np.isin(pos, random_pick)

    def rate(mask: np.ndarray) -> float | None:
        return round(float(y[mask].mean()), 4) if mask.any() else None

    base = rate(np.ones(y.size, dtype=bool))
    inside = rate(in_selection)
    return {
        "labelled_in_pool": int(y.size),
        "base_rate": base,
        "labelled_in_selection": int(in_selection.sum()),
        "positive_rate_in_selection": inside,
        "lift": round(inside / base, 2) if inside is not None and base else None,
        "labelled_in_random": int(in_random.sum()),
        "positive_rate_in_random": rate(in_random),
    }


def selection_vectors(records: pl.DataFrame, params: Any, scores: pl.DataFrame | None, embedder: str | None = None):
    """Record vectors for a diversity strategy, computed for the records it needs (its candidates), zero
    elsewhere; None when the strategy needs none. Embeddings come from and go into the default cache."""
    from curate.embed.encoder import Embedder, EmbeddingCache, EmbedSettings
    from curate.embed.pairs import pair_vectors, record_vectors

    positions = needs_vectors(records, params, scores)
    if not positions.size:
        return None
    model = Embedder(EmbedSettings(model=embedder))
    cache = EmbeddingCache(EmbeddingCache.default_root(), model.key(), model.dimension)
    vectors = np.zeros((records.height, model.dimension), dtype=np.float32)
    vectors[positions] = record_vectors(*pair_vectors(records[positions], model, cache))
    return vectors
