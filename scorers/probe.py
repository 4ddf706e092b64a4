"""The judge-distilled probes: logistic regressions on label-free text signals, one per judge.

An LLM judge is too slow to rate 52,000 records on a CPU; its decisions on a sample teach a cheap
model that rates every record. There is one probe per judge (AlpaGasus's accuracy judge: the
``quality_probe`` column; its helpfulness judge: ``helpfulness_probe``), all reading the same
features (``FEATURES``, :mod:`scorers.signals`): the response's hashed word 1-2 grams (what the
answer says) beside standardized scalar signals (informativeness as a hinge basis of log length,
instruction complexity, coherence, degenerate and repetitive answers, structure). The features
need no neural network, so the quality stage computes them once for all probes in seconds.

A probe is a JSON file (the standardization folded into one float32 weight vector, base64;
training metrics; the labels' sha256), so it ships in the repository and ``curate probe train``
retrains it bit for bit on the same machine.

The **combined score** (:func:`combined_score`) ranks records for a selection by a weighted sum
of the probes' standardized logits, ``sum_j w_j (logit_j - mean_j) / std_j`` (mean and std of each
probe's logit over its training rows, so the score does not depend on the pool), null (ranked
last) where the response has fewer than ``min_response_words`` words and, for a recipe entry with
``exclude_failed_checks``, where the record fails a label-free check. The weights are recipe
parameters, chosen by :func:`choose_weights` on cross-validated logits, never on the rows a
selection is scored on, with the top taken as the selection takes it (the 9k's median guard).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.io.atomic import sha256_file, write_bytes
from curate.records.schema import ID, INSTRUCTION, OUTPUT, SOURCE_ID

PROBES_DIR = Path(__file__).parent / "probes"
DEFAULT_PROBE = PROBES_DIR / "alpagasus-accuracy.json"
HELPFULNESS_PROBE = PROBES_DIR / "alpagasus-helpfulness.json"
SCORE = "quality_probe"
HELPFULNESS = "helpfulness_probe"
DEFAULT_PROBES = {SCORE: DEFAULT_PROBE, HELPFULNESS: HELPFULNESS_PROBE}
FEATURES = "text-hash-v2"
C_GRID = (0.1, 0.3, 1.0, 3.0)
# How a selection takes its top: (positions best first, response words, n) -> the positions taken.
Pick = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


@dataclass
class QualityProbe:
    """``score = sigmoid(features @ weights + bias)``; ``weights`` is float32, base64 in the file."""

    model: str
    features: str
    weights: np.ndarray
    bias: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path | str) -> None:
        body = asdict(self)
        body["weights"] = base64.b64encode(np.asarray(self.weights, dtype="<f4").tobytes()).decode()
        write_bytes(Path(path), (json.dumps(body, indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: Path | str) -> QualityProbe:
        try:
            body = json.loads(Path(path).read_text())
            body["weights"] = np.frombuffer(base64.b64decode(body["weights"]), dtype="<f4").astype(np.float64)
            probe = cls(**body)
        except (OSError, json.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
            raise CurateError(f"{path}: not a curate quality probe ({exc})") from None
        if probe.features != FEATURES:
            raise CurateError(f"{path}: probe features {probe.features!r}, this curate computes {FEATURES!r}")
        return probe

    def logits(self, scalars: np.ndarray, hashed: Any) -> np.ndarray:
        from scorers.signals import HASH_FEATURES

        k = scalars.shape[1]
        if len(self.weights) != k + HASH_FEATURES:
            raise CurateError(f"probe expects {len(self.weights)} features, got {k + HASH_FEATURES}")
        return scalars @ self.weights[:k] + hashed @ self.weights[k:] + self.bias

    def standardized(self, logits: np.ndarray) -> np.ndarray:
        """Logits on the scale of the probe's training rows (mean 0, std 1 there)."""
        return (logits - self.metrics["logit_mean"]) / self.metrics["logit_std"]


def read_labels(labels_path: Path | str) -> pl.DataFrame:
    """Judge labels as ``source_id`` + ``label`` (rows ``{"row": N, "score_at_least_4_5": bool}``, the
    AlpaGasus sample format, N = the record's ``source_id``) or ``id`` + ``label`` (``{"id", "label"}``)."""
    try:
        labels = pl.read_ndjson(labels_path)
    except Exception as exc:
        raise CurateError(f"{labels_path}: cannot read judge labels as JSON lines ({exc})") from None
    if {"row", "score_at_least_4_5"} <= set(labels.columns):
        return labels.select(
            pl.col("row").cast(pl.String).alias(SOURCE_ID), pl.col("score_at_least_4_5").alias("label")
        )
    if {"id", "label"} <= set(labels.columns):
        return labels.select(pl.col("id").cast(pl.String).alias(ID), pl.col("label"))
    raise CurateError(f"{labels_path}: needs columns row + score_at_least_4_5, or id + label; has {labels.columns}")


def labelled_records(records: pl.DataFrame, labels_path: Path | str) -> tuple[pl.DataFrame, np.ndarray]:
    """Join judge labels (see :func:`read_labels`) to records; labels naming missing records are an error."""
    labels = read_labels(labels_path)
    key = labels.columns[0]
    joined = labels.join(records, on=key, how="left")
    missing = joined[ID if key == SOURCE_ID else SOURCE_ID].null_count()
    if missing:
        raise CurateError(f"{labels_path}: {missing} labels name records that do not exist in the input")
    return joined.drop("label"), joined["label"].cast(pl.Boolean).to_numpy().astype(int)


def agreeing_labels(paths: dict[str, Path | str]) -> dict[str, pl.DataFrame]:
    """Several judges' label files (name -> path), checked to label the same rows in the same id form."""
    read = {name: read_labels(path) for name, path in paths.items()}
    first = next(iter(read), None)
    for name, labels in read.items():
        if not labels["label"].cast(pl.Boolean).any():
            raise CurateError(f"{paths[name]}: no positive labels (a probe needs judge-positive examples)")
        base = read[first]
        if labels.columns[0] != base.columns[0]:
            raise CurateError(
                f"{paths[name]}: labels name records by {labels.columns[0]}, but {paths[first]} by {base.columns[0]}"
            )
        if labels.height != base.height:
            raise CurateError(f"{paths[name]}: {labels.height:,} labels, but {paths[first]} has {base.height:,}")
    return read


def _fit(x: Any, y: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=3000).fit(x, y)


def _folds(y: np.ndarray, folds: int, seed: int) -> Any:
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)


def _fold_logits(scalars: np.ndarray, hashed: Any, y: np.ndarray, fit_rows: Any, held: Any, c: float) -> np.ndarray:
    from scorers.signals import text_matrix

    mean, scale = scalars[fit_rows].mean(0), np.maximum(scalars[fit_rows].std(0), 1e-9)
    model = _fit(text_matrix(scalars[fit_rows], hashed[fit_rows], mean, scale), y[fit_rows], c)
    return model.decision_function(text_matrix(scalars[held], hashed[held], mean, scale))


def choose_c(
    scalars: np.ndarray, hashed: Any, y: np.ndarray, grid: tuple[float, ...] = C_GRID, folds: int = 3, seed: int = 0
) -> float:
    """The regularization in ``grid`` with the best ``folds``-fold ROC AUC on these rows (ties: the smaller C).
    The judges differ (the accuracy judge's signal is weak and wants a strong prior), so each probe gets its own."""
    from sklearn.metrics import roc_auc_score

    splits = list(_folds(y, folds, seed))
    best, best_auc = grid[0], -1.0
    for c in grid:
        logits = np.zeros(len(y))
        for fit_rows, held in splits:
            logits[held] = _fold_logits(scalars, hashed, y, fit_rows, held, c)
        auc = float(roc_auc_score(y, logits))
        if auc > best_auc + 1e-9:
            best, best_auc = c, auc
    return best


def cross_validated_logits(
    scalars: np.ndarray, hashed: Any, y: np.ndarray, c: float | None = None, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold logits: each row scored by a probe that never saw its label (standardization per fold).
    ``c=None`` chooses C per fold (:func:`choose_c` on that fold's training rows only): nested, so the
    AUC of these logits is an honest estimate of the probe ``train(c=None)`` ships."""
    logits = np.zeros(len(y))
    for fit_rows, held in _folds(y, folds, seed):
        fold_c = c if c is not None else choose_c(scalars[fit_rows], hashed[fit_rows], y[fit_rows], seed=seed)
        logits[held] = _fold_logits(scalars, hashed, y, fit_rows, held, fold_c)
    return logits


def train(
    scalars: np.ndarray,
    hashed: Any,
    y: np.ndarray,
    model: str,
    labels_sha256: str,
    c: float | None = None,
    folds: int = 5,
    seed: int = 0,
    cv_logits: np.ndarray | None = None,
) -> QualityProbe:
    """Cross-validate (ROC AUC, precision in the top 10 %), then fit on every label.

    ``c=None`` (the default) chooses the regularization by :func:`choose_c` on all labels for the shipped
    fit, and per fold for the reported CV metrics, so those metrics are nested.

    The metrics keep the mean and std of the out-of-fold logits: the scale of the probe on unseen records.
    ``cv_logits``: the out-of-fold logits of :func:`cross_validated_logits` with the same arguments, when the
    caller has them already."""
    from sklearn.metrics import roc_auc_score

    from scorers.signals import SCALARS, text_matrix

    if len(set(y.tolist())) < 2:
        raise CurateError("judge labels must contain both positive and negative examples")
    predicted = cross_validated_logits(scalars, hashed, y, c, folds, seed) if cv_logits is None else cv_logits
    top = np.argsort(-predicted, kind="stable")[: max(1, len(y) // 10)]
    length_auc = roc_auc_score(y, scalars[:, SCALARS.index("log_words_output")])
    chosen_c = c if c is not None else choose_c(scalars, hashed, y, seed=seed)
    mean, scale = scalars.mean(0), np.maximum(scalars.std(0), 1e-9)
    fitted = _fit(text_matrix(scalars, hashed, mean, scale), y, chosen_c)
    coef = fitted.coef_[0]
    k = scalars.shape[1]
    # Fold the standardization of the scalar block into its weights: w' = w / scale, b' = b - sum(w' * mean).
    folded = np.concatenate([coef[:k] / scale, coef[k:]])
    weights = folded.astype("<f4")
    bias = float(fitted.intercept_[0] - np.sum(coef[:k] / scale * mean))
    probe = QualityProbe(model=model, features=FEATURES, weights=weights, bias=bias)
    probe.metrics = {
        "labels": len(y),
        "positives": int(y.sum()),
        "base_rate": round(float(y.mean()), 4),
        "cv_auc": round(float(roc_auc_score(y, predicted)), 4),
        "precision_top10pct": round(float(y[top].mean()), 4),
        "length_only_auc": round(float(length_auc), 4),
        "folds": folds,
        "seed": seed,
        "C": chosen_c,
        "C_chosen_by": "given" if c is not None else f"3-fold ROC AUC over {list(C_GRID)}",
        # The scale of logits on records the probe never saw (out of fold), for the combined score.
        "logit_mean": round(float(predicted.mean()), 6),
        "logit_std": round(float(predicted.std()), 6),
        "labels_sha256": labels_sha256,
    }
    return probe


def label_sha256(path: Path | str) -> str:
    return sha256_file(Path(path))


def load_probes(paths: dict[str, Path | str | None] | None = None) -> dict[str, QualityProbe]:
    """Probes by annotation column; a None path means the shipped probe of that column."""
    wanted = {**DEFAULT_PROBES, **{k: v for k, v in (paths or {}).items()}}
    return {column: QualityProbe.load(path or DEFAULT_PROBES[column]) for column, path in wanted.items()}


def combined_score(
    standardized: dict[str, np.ndarray],
    weights: dict[str, float],
    response_words: np.ndarray,
    min_response_words: int = 0,
    where: str = "combine",
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """``sum_j w_j z_j`` over the probes' standardized logits; NaN (ranked last) under the length floor
    and where ``exclude`` is true (records that fail a label-free check: :func:`scorers.signals.failed_checks`)."""
    for column in weights:
        if column not in standardized:
            raise CurateError(f"{where}.weights: no probe column {column!r} (have {', '.join(sorted(standardized))})")
    total = np.zeros(len(response_words))
    for column, weight in weights.items():
        total += weight * standardized[column]
    dropped = response_words < min_response_words
    if exclude is not None:
        dropped |= exclude
    return np.where(dropped, np.nan, total)


def _standardized(logits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {c: (v - v.mean()) / max(v.std(), 1e-12) for c, v in logits.items()}


def top_and_worst_lift(
    z: dict[str, np.ndarray],
    weights: dict[str, float],
    labels: dict[str, np.ndarray],
    fraction: float,
    response_words: np.ndarray,
    min_response_words: int,
    aim: dict[str, float] | None,
    pick: Pick | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """The rows in the top ``fraction`` by the combined score (``pick(order, response_words, n)`` when the
    selection takes its top another way, e.g. :func:`curate.selection.strategies.median_guarded`), and the
    worst judge's lift there (positive rate over base rate, divided by that judge's ``aim``)."""
    score = combined_score(z, weights, response_words, min_response_words, exclude=exclude)
    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
    n = max(1, round(fraction * len(score)))
    top = order[:n] if pick is None else pick(order, response_words, n)
    aim = aim or {}
    worst = min(labels[c][top].mean() / max(labels[c].mean(), 1e-12) / aim.get(c, 1.0) for c in labels)
    return top, worst


def choose_weights(
    logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    fraction: float,
    response_words: np.ndarray,
    min_response_words: int = 0,
    aim: dict[str, float] | None = None,
    grid: int = 21,
    pick: Pick | None = None,
    exclude: np.ndarray | None = None,
) -> dict[str, float]:
    """The weights ``(w, 1 - w)`` of two probes, ``w`` on a grid, that maximize the worst judge's lift
    (positive rate over base rate, divided by ``aim``) in the top ``fraction`` of the rows given (taken as
    the recipe takes it: the length floor, the excluded rows, ``pick``); ties go to the ``w`` nearest 0.5.
    Call it on cross-validated logits of labelled rows; the rows a selection is judged on must not be among them."""
    first, second = list(logits)
    z = _standardized(logits)
    best, best_value = {first: 0.5, second: 0.5}, -np.inf
    for w in np.linspace(0.0, 1.0, grid):
        weights = {first: round(float(w), 4), second: round(float(1 - w), 4)}
        _, worst = top_and_worst_lift(
            z, weights, labels, fraction, response_words, min_response_words, aim, pick, exclude
        )
        # Ties go to the weight nearest an even mix.
        if worst > best_value + 1e-9 or (abs(worst - best_value) <= 1e-9 and abs(w - 0.5) < abs(best[first] - 0.5)):
            best, best_value = weights, worst
    return best


FLOORS = (0, 3, 5, 6, 7, 8, 10, 12, 15)


def choose_weights_and_floor(
    logits: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    fraction: float,
    response_words: np.ndarray,
    floors: tuple[int, ...] = FLOORS,
    min_median_ratio: float = 0.75,
    aim: dict[str, float] | None = None,
    pick: Pick | None = None,
    exclude: np.ndarray | None = None,
) -> tuple[dict[str, float], int]:
    """:func:`choose_weights` for each response-length floor in ``floors``, and the floor whose weights
    lift the worst judge most, among the floors whose top ``fraction`` has a median response of at
    least ``min_median_ratio`` times the rows' median (a label-free guard against a selection of short
    answers; when no floor passes it, the floor whose top comes closest). Ties go to the lower floor.
    ``pick``: how the selection takes its top (see :func:`top_and_worst_lift`); one that keeps the
    median itself (``top_k`` with ``min_median_ratio``) lets every floor pass."""
    z = _standardized(logits)
    pool_median = max(float(np.median(response_words)), 1.0)
    best: tuple[float, float, dict[str, float], int] | None = None
    for floor in floors:
        weights = choose_weights(logits, labels, fraction, response_words, floor, aim=aim, pick=pick, exclude=exclude)
        top, worst = top_and_worst_lift(z, weights, labels, fraction, response_words, floor, aim, pick, exclude)
        ratio = float(np.median(response_words[top])) / pool_median
        key = (min(ratio, min_median_ratio), worst)
        if best is None or key > best[:2]:
            best = (*key, weights, floor)
    assert best is not None
    return best[2], best[3]


def quality_stage(records: pl.DataFrame, spec: Any, progress: bool = False) -> Any:
    """:func:`probe_stage` as a recipe's ``score`` spec asks for it (its probes, combined scores and
    embedder): the one way the flows and the Python API run the quality stage."""
    from curate.embed.encoder import Embedder, EmbedSettings

    embedder = Embedder(EmbedSettings(model=spec.embedder))
    return probe_stage(records, load_probes(spec.probe_paths()), spec.combine, embedder, progress=progress)


def probe_stage(
    records: pl.DataFrame,
    probes: dict[str, QualityProbe],
    combine: list[Any] | None = None,
    embedder: Any = None,
    progress: bool = False,
    chunk: int = 4096,
) -> Any:
    """The ``quality`` stage: keeps every record and annotates its signals.

    Columns: one per probe (``quality_probe``, ``helpfulness_probe``: the probability that the judge
    rates the record >= 4.5), the label-free signals of :func:`scorers.signals.signal_columns`, one
    per combined score of ``combine`` (items with ``name``, ``weights`` and ``min_response_words``),
    and ``response_tokens`` (the embedder's tokenizer, uncut) when an embedder is given.
    """
    from curate.records.schema import empty_rejects
    from curate.run.progress import Progress
    from curate.stages.result import StageResult
    from scorers.signals import SCALARS, failed_checks, signal_columns, signals

    if INSTRUCTION not in records.columns or (records.height and records[INSTRUCTION].null_count() == records.height):
        raise CurateError("the quality probe scores instruction records (instruction, input, output)")
    meter = Progress("quality", unit="records", total=records.height, enabled=progress)
    logits = {column: np.zeros(records.height) for column in probes}
    parts = []
    for start in range(0, records.height, chunk):
        part = records.slice(start, chunk)
        scalars, hashed = signals(part)
        for column, probe in probes.items():
            logits[column][start : start + part.height] = probe.logits(scalars, hashed)
        parts.append(signal_columns(part, scalars))
        meter.advance(part.height)
    meter.close()
    annotations = pl.concat(parts) if parts else signal_columns(records, np.zeros((0, len(SCALARS))))
    columns = {column: pl.Series(1.0 / (1.0 + np.exp(-v)), dtype=pl.Float64) for column, v in logits.items()}
    standardized = {column: probes[column].standardized(v) for column, v in logits.items()}
    words = records[OUTPUT].fill_null("").str.count_matches(r"\S+").to_numpy()
    failed = failed_checks(annotations)
    for spec in combine or []:
        where = f"score.combine.{spec.name}"
        exclude = failed if getattr(spec, "exclude_failed_checks", False) else None
        score = combined_score(standardized, spec.weights, words, spec.min_response_words, where, exclude)
        columns[spec.name] = pl.Series(score, dtype=pl.Float64, nan_to_null=True)
    if embedder is not None:
        tokens = embedder.token_lengths(records[OUTPUT].fill_null("").to_list()) if records.height else []
        columns["response_tokens"] = pl.Series(np.asarray(tokens), dtype=pl.Int64)
    annotations = annotations.with_columns(**columns)
    params = {
        "probe_features": FEATURES,
        "probes": {column: {"model": p.model, "metrics": p.metrics} for column, p in probes.items()},
        "probe_metrics": probes[SCORE].metrics if SCORE in probes else next(iter(probes.values())).metrics,
        "combine": [spec.model_dump() for spec in combine or []],
        "embedder": embedder.key() if embedder is not None else None,
    }
    result = StageResult("quality", params, records.height, records, empty_rejects(), annotations)
    result.stats = {
        **{f"mean_{column}": round(float(columns[column].mean() or 0), 4) for column in probes},
        "mean_score": round(float(columns[next(iter(probes))].mean() or 0), 4) if records.height else None,
        "median_response_words": int(np.median(words)) if len(words) else None,
        "degenerate": int(annotations["degenerate"].sum()),
        "records_per_s": round(records.height / max(meter.elapsed(), 1e-9), 1),
    }
    if "response_tokens" in columns and records.height:
        result.stats["median_response_tokens"] = int(columns["response_tokens"].median())
    return result


def judge_labels(spec: str) -> pl.DataFrame:
    """Judge labels (see :func:`read_labels`) from a registry name (e.g. ``alpagasus-claude-sample``) or a path."""
    return read_labels(label_path(spec)).with_columns(pl.col("label").cast(pl.Boolean))


def label_path(spec: str) -> Path:
    """A label file's path from a registry name or a path."""
    from curate.io import catalog

    path = Path(spec)
    if not path.exists():
        dataset = catalog.lookup(spec)
        if dataset is None:
            raise CurateError(f"judge labels {spec!r}: neither a file nor a dataset in the registry")
        path = catalog.resolve(dataset, check=False)
    return path
