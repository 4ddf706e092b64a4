"""The judge-distilled quality probe: a logistic regression on sentence embeddings.

An LLM judge is too slow to rate 52,000 records on a CPU; its decisions on a sample teach a
cheap model that rates every record. Features (``FEATURES``): the embeddings of the prompt
(instruction and input) and of the response, each on its own, their cosine (coherence: does the
answer talk about what was asked), and the log lengths (characters) of instruction, input and
output, standardized. The embedding block is regularized hard (``C`` = 0.0003: 768 dimensions
against about a thousand positive labels overfit otherwise) and the four scalar signals are
multiplied by ``SIGNAL_WEIGHT`` after standardization, so the penalty shrinks them 100 times less.
The probe is a small JSON file (the standardization folded into one
float32 weight vector, base64; training metrics; the labels' sha256), so it ships in the
repository and ``curate probe train`` retrains it bit for bit on the same machine.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.io.atomic import sha256_file, write_bytes
from curate.records.schema import ID, INPUT, INSTRUCTION, OUTPUT, SOURCE_ID

DEFAULT_PROBE = Path(__file__).parent / "probes" / "alpagasus-claude-minilm.json"
SCORE = "quality_probe"
FEATURES = "prompt-response-v2"
LENGTH_FEATURES = ("log_chars_instruction", "log_chars_input", "log_chars_output")
SIGNAL_WEIGHT = 10.0
DEFAULT_C = 0.0003


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

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.shape[1] != len(self.weights):
            raise CurateError(f"probe expects {len(self.weights)} features, got {features.shape[1]}")
        return 1.0 / (1.0 + np.exp(-(features @ self.weights + self.bias)))


def prompt_response(records: pl.DataFrame) -> pl.DataFrame:
    """``id``, ``prompt`` (instruction, then input when there is one) and ``response`` (output)."""
    instruction, given = pl.col(INSTRUCTION).fill_null(""), pl.col(INPUT).fill_null("")
    return records.select(
        ID,
        pl.when(given != "").then(instruction + "\n\n" + given).otherwise(instruction).alias("prompt"),
        pl.col(OUTPUT).fill_null("").alias("response"),
    )


def pair_vectors(records: pl.DataFrame, embedder: Any, cache: Any = None, progress: bool = False):
    """Prompt and response embeddings (record order), from and into the cache."""
    from curate.embed.encoder import embed_records

    pairs = prompt_response(records)
    prompt, _ = embed_records(pairs, embedder, "prompt", cache, progress)
    response, _ = embed_records(pairs, embedder, "response", cache, progress)
    return prompt, response


def coherence(prompt: np.ndarray, response: np.ndarray) -> np.ndarray:
    """Cosine of prompt and response embeddings (both unit length)."""
    return np.einsum("ij,ij->i", prompt.astype(np.float64), response.astype(np.float64))


def record_vectors(prompt: np.ndarray, response: np.ndarray) -> np.ndarray:
    """One unit vector per record, the normalized sum of its prompt and response embeddings (for diversity)."""
    both = prompt.astype(np.float32) + response.astype(np.float32)
    return both / np.maximum(np.linalg.norm(both, axis=1, keepdims=True), 1e-12)


def features(records: pl.DataFrame, prompt: np.ndarray, response: np.ndarray) -> np.ndarray:
    lengths = np.stack([records[c].fill_null("").str.len_chars().to_numpy() for c in (INSTRUCTION, INPUT, OUTPUT)], 1)
    return np.hstack(
        [
            prompt.astype(np.float64),
            response.astype(np.float64),
            coherence(prompt, response)[:, None],
            np.log1p(lengths.astype(np.float64)),
        ]
    )


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


def train(
    records: pl.DataFrame,
    prompt: np.ndarray,
    response: np.ndarray,
    y: np.ndarray,
    model: str,
    labels_sha256: str,
    c: float = DEFAULT_C,
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
    from functools import partial

    from sklearn.preprocessing import FunctionTransformer

    x = features(records, prompt, response)
    emphasis = np.ones(x.shape[1])
    emphasis[prompt.shape[1] + response.shape[1] :] = SIGNAL_WEIGHT
    pipeline = make_pipeline(
        StandardScaler(), FunctionTransformer(partial(np.multiply, emphasis)), LogisticRegression(C=c, max_iter=5000)
    )
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(pipeline, x, y, cv=cv, method="predict_proba")[:, 1]
    top = np.argsort(-predicted, kind="stable")[: max(1, len(y) // 10)]
    length_auc = roc_auc_score(y, -x[:, -1])
    pipeline.fit(x, y)
    scaler, logistic = pipeline[0], pipeline[2]
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
        "signal_weight": SIGNAL_WEIGHT,
        "labels_sha256": labels_sha256,
    }
    # Fold standardization and emphasis into the weights: w' = w e / scale, b' = b - sum(w' * mean).
    folded = logistic.coef_[0] * emphasis / scaler.scale_
    weights = folded.astype("<f4")
    bias = float(logistic.intercept_[0] - np.sum(folded * scaler.mean_))
    return QualityProbe(model=model, features=FEATURES, weights=weights, bias=bias, metrics=metrics)


def label_sha256(path: Path | str) -> str:
    return sha256_file(Path(path))


def probe_stage(
    records: pl.DataFrame, probe: QualityProbe, embedder: Any, cache: Any = None, progress: bool = False
) -> Any:
    """The ``quality`` stage: keeps every record and annotates its signals.

    Columns: ``quality_probe`` (the probe's probability that the judge rates the record >= 4.5),
    ``coherence`` (prompt-response cosine), ``response_tokens`` (the embedder's tokenizer, uncut).
    """
    from curate.records.schema import empty_rejects
    from curate.stages.result import StageResult

    if INSTRUCTION not in records.columns or (records.height and records[INSTRUCTION].null_count() == records.height):
        raise CurateError("the quality probe scores instruction records (instruction, input, output)")
    prompt, response = pair_vectors(records, embedder, cache, progress)
    scores = probe.predict(features(records, prompt, response)) if records.height else np.zeros(0)
    tokens = embedder.token_lengths(records[OUTPUT].fill_null("").to_list()) if records.height else np.zeros(0)
    annotations = pl.DataFrame(
        {
            ID: records[ID],
            SCORE: pl.Series(scores, dtype=pl.Float64),
            "coherence": pl.Series(coherence(prompt, response), dtype=pl.Float64),
            "response_tokens": pl.Series(np.asarray(tokens), dtype=pl.Int64),
        }
    )
    params = {"probe_features": probe.features, "probe_metrics": probe.metrics, "embedder": embedder.key()}
    result = StageResult("quality", params, records.height, records, empty_rejects(), annotations)
    result.stats = {
        "mean_score": round(float(scores.mean()), 4) if len(scores) else None,
        "median_response_tokens": int(np.median(tokens)) if len(tokens) else None,
    }
    return result


def judge_labels(spec: str) -> pl.DataFrame:
    """Judge labels (see :func:`read_labels`) from a registry name (e.g. ``alpagasus-claude-sample``) or a path."""
    from curate.io import catalog

    path = Path(spec)
    if not path.exists():
        dataset = catalog.lookup(spec)
        if dataset is None:
            raise CurateError(f"judge labels {spec!r}: neither a file nor a dataset in the registry")
        path = catalog.resolve(dataset, check=False)
    return read_labels(path).with_columns(pl.col("label").cast(pl.Boolean))
