"""The judge-distilled quality probe: a logistic regression on sentence embeddings.

An LLM judge is too slow to rate 52,000 records on a CPU; its decisions on a sample teach a
cheap model that rates every record. Features: the embedding of the whole record plus the log
lengths (characters) of instruction, input and output, standardized. The probe is a small JSON
file (weights, scaler, training metrics, the labels' sha256), so it ships in the repository and
``curate probe train`` retrains it bit for bit on the same machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.atomic import sha256_file, write_bytes
from curate.errors import CurateError
from curate.schema import ID, INPUT, INSTRUCTION, OUTPUT, SOURCE_ID

DEFAULT_PROBE = Path(__file__).parent / "probes" / "alpagasus-claude-minilm.json"
SCORE = "quality_probe"


@dataclass
class QualityProbe:
    model: str
    weights: list[float]
    bias: float
    mean: list[float]
    scale: list[float]
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path | str) -> None:
        write_bytes(Path(path), (json.dumps(asdict(self), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: Path | str) -> QualityProbe:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as exc:
            raise CurateError(f"{path}: not a curate quality probe ({exc})") from None

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.weights) + self.bias)))


def features(records: pl.DataFrame, vectors: np.ndarray) -> np.ndarray:
    lengths = np.stack([records[c].fill_null("").str.len_chars().to_numpy() for c in (INSTRUCTION, INPUT, OUTPUT)], 1)
    return np.hstack([vectors.astype(np.float64), np.log1p(lengths.astype(np.float64))])


def labelled_records(records: pl.DataFrame, labels_path: Path | str) -> tuple[pl.DataFrame, np.ndarray]:
    """Join judge labels to records: rows ``{"row": N, "score_at_least_4_5": bool}`` (AlpaGasus
    sample format, N = the record's ``source_id``) or ``{"id": ..., "label": bool}``."""
    try:
        labels = pl.read_ndjson(labels_path)
    except Exception as exc:
        raise CurateError(f"{labels_path}: cannot read judge labels as JSON lines ({exc})") from None
    if {"row", "score_at_least_4_5"} <= set(labels.columns):
        labels = labels.select(pl.col("row").cast(pl.String).alias(SOURCE_ID), pl.col("score_at_least_4_5").alias("y"))
        key = SOURCE_ID
    elif {"id", "label"} <= set(labels.columns):
        labels = labels.select(pl.col("id").cast(pl.String).alias(ID), pl.col("label").alias("y"))
        key = ID
    else:
        raise CurateError(f"{labels_path}: needs columns row + score_at_least_4_5, or id + label; has {labels.columns}")
    joined = labels.join(records, on=key, how="left")
    missing = joined[ID if key == SOURCE_ID else SOURCE_ID].null_count()
    if missing:
        raise CurateError(f"{labels_path}: {missing} labels name records that do not exist in the input")
    return joined.drop("y"), joined["y"].cast(pl.Boolean).to_numpy().astype(int)


def train(
    records: pl.DataFrame,
    vectors: np.ndarray,
    y: np.ndarray,
    model: str,
    labels_sha256: str,
    c: float = 0.1,
    folds: int = 5,
    seed: int = 0,
) -> QualityProbe:
    """Cross-validate (ROC AUC, precision in the top 10 %), then fit on every label."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(y.tolist())) < 2:
        raise CurateError("judge labels must contain both positive and negative examples")
    x = features(records, vectors)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(pipeline, x, y, cv=cv, method="predict_proba")[:, 1]
    top = np.argsort(-predicted, kind="stable")[: max(1, len(y) // 10)]
    length_auc = roc_auc_score(y, -x[:, -1])
    pipeline.fit(x, y)
    scaler, logistic = pipeline[0], pipeline[1]
    metrics = {
        "labels": len(y),
        "positives": int(y.sum()),
        "base_rate": round(float(y.mean()), 4),
        "cv_auc": round(float(roc_auc_score(y, predicted)), 4),
        "precision_top10pct": round(float(y[top].mean()), 4),
        "length_only_auc": round(float(length_auc), 4),
        "folds": folds,
        "seed": seed,
        "C": c,
        "labels_sha256": labels_sha256,
    }
    return QualityProbe(
        model=model,
        weights=logistic.coef_[0].tolist(),
        bias=float(logistic.intercept_[0]),
        mean=scaler.mean_.tolist(),
        scale=scaler.scale_.tolist(),
        metrics=metrics,
    )


def label_sha256(path: Path | str) -> str:
    return sha256_file(Path(path))
