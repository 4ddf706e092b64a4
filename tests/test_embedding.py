"""The embedding engine with the real bundled model: equal to plain sentence-transformers,
cached, device and faiss paths chosen by rule, semantic dedup with the reject contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.embed.encoder import Embedder, EmbeddingCache, EmbedSettings, embed_records, native_bf16
from curate.embed.index import VectorIndex, choose_kind, kmeans
from curate.errors import CurateError
from curate.records.schema import KIND_TEXT, conform
from scorers.embedding import embed_stage
from scorers.semdedup import SemDedupParams, semantic_duplicates
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(EmbedSettings(precision="fp32"))


@pytest.fixture(scope="module")
def seed_texts(data_dir: Path) -> list[str]:
    rows = [json.loads(line) for line in (data_dir / "alpaca_seed_tasks.jsonl").open()]
    return [r["instruction"] + "\n\n" + r["instances"][0]["output"] for r in rows][:96]


def records(texts: list[str]) -> pl.DataFrame:
    ids = [f"t{i:03d}" for i in range(len(texts))]
    return conform(pl.DataFrame({"id": ids, "source_id": ids, "kind": [KIND_TEXT] * len(texts), "text": texts}))


def test_matches_plain_sentence_transformers(embedder: Embedder, seed_texts: list[str]) -> None:
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(embedder.path, device="cpu").encode(seed_texts, normalize_embeddings=True)
    ours = embedder.encode(seed_texts)
    cosine = (plain * ours).sum(axis=1)
    assert ours.dtype == np.float32 and ours.shape == (len(seed_texts), 384)
    assert cosine.min() >= 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_bad_input_is_counted_not_fatal(embedder: Embedder) -> None:
    from curate.embed.encoder import EncodeStats

    stats = EncodeStats()
    texts = ["", "   ", "word " * 2000, "漢字とひらがなのテキスト", "🙂🙂🙂", "same", "same"]
    vectors = embedder.encode(texts, stats=stats)
    assert vectors.shape == (7, 384) and np.isfinite(vectors).all()
    assert stats.truncated == 1 and stats.empty == 2 and stats.duplicates == 1
    assert np.array_equal(vectors[5], vectors[6])


def test_cache_second_run_encodes_nothing(embedder: Embedder, seed_texts: list[str], tmp_path: Path) -> None:
    frame = records(seed_texts)
    cache = EmbeddingCache(tmp_path, embedder.key(), embedder.dimension)
    first, stats = embed_records(frame, embedder, cache=cache, chunk=40)
    assert stats.encoded == len(seed_texts) and stats.from_cache == 0
    assert len(list((tmp_path / embedder.key()).glob("part-*.parquet"))) == 3
    again, stats = embed_records(frame, embedder, cache=EmbeddingCache(tmp_path, embedder.key(), embedder.dimension))
    assert stats.encoded == 0 and stats.from_cache == len(seed_texts)
    assert np.array_equal(first, again)
    bigger = records([*seed_texts, "a new text about gardening"])
    _, stats = embed_records(bigger, embedder, cache=EmbeddingCache(tmp_path, embedder.key(), embedder.dimension))
    assert stats.encoded == 1 and stats.from_cache == len(seed_texts)


def test_device_and_precision_chosen_by_rule() -> None:
    import torch

    cuda = torch.cuda.is_available()
    chosen = Embedder(EmbedSettings(precision="auto"))
    assert chosen.device == ("cuda" if cuda else "cpu")
    assert chosen.batch_size == (256 if cuda else 16)
    assert Embedder(EmbedSettings(batch_size=5)).batch_size == 5
    if cuda:  # auto is fp16 on CUDA, and fp16 can be asked for there
        assert chosen.precision == "fp16"
        assert Embedder(EmbedSettings(precision="fp16")).precision == "fp16"
    else:  # on CPU bf16 only with native bf16 and when it matched fp32 on the check texts; fp16 is refused
        assert chosen.precision == ("bf16" if native_bf16() and chosen.check_cosine >= 0.999 else "fp32")
        assert Embedder(EmbedSettings(precision="auto")).precision == chosen.precision  # a rule, not a timing
        with pytest.raises(CurateError, match="fp16 needs CUDA"):
            _ = Embedder(EmbedSettings(precision="fp16")).precision
    assert Embedder(EmbedSettings(precision="fp32")).precision == "fp32"


def test_cache_key_names_the_precision() -> None:
    """bf16 vectors are close to fp32's, not equal: a cache never serves one for the other."""
    fp32, bf16 = Embedder(EmbedSettings(precision="fp32")), Embedder(EmbedSettings(precision="bf16"))
    assert fp32.key() != bf16.key()
    auto = Embedder(EmbedSettings(precision="auto"))
    if auto.key() and auto.device == "cpu":
        assert auto.key() == (bf16.key() if native_bf16() else fp32.key())
    else:  # fp16 on CUDA
        assert auto.key() not in (fp32.key(), bf16.key())


def test_unloadable_model_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(CurateError, match="cannot load model"):
        _ = Embedder(EmbedSettings(model=str(tmp_path / "empty-model"))).model


def test_faiss_paths_on_cpu() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert choose_kind(100) == "flat" and choose_kind(10**6) == "ivf" and choose_kind(10, "hnsw") == "hnsw"
    flat = VectorIndex.build(vectors, kind="flat", use_gpu=False)
    scores, positions = flat.search(vectors[:5], 3)
    assert positions[:, 0].tolist() == [0, 1, 2, 3, 4] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    for kind in ("ivf", "hnsw"):
        approx = VectorIndex.build(vectors, kind=kind, use_gpu=False)
        assert approx.search(vectors[:5], 1)[1][:, 0].tolist() == [0, 1, 2, 3, 4]
    hits = flat.range_search(vectors[:2], 0.99)
    assert [h[0].tolist() for h in hits] == [[0], [1]]
    centroids, assignment = kmeans(vectors, 8, seed=0, use_gpu=False)
    assert centroids.shape == (8, 32) and assignment.shape == (2000,)
    assert np.array_equal(assignment, kmeans(vectors, 8, seed=0, use_gpu=False)[1])


def test_semdedup_contract(embedder: Embedder) -> None:
    texts = [
        "How do I bake sourdough bread at home?",
        "How can I bake sourdough bread at home?",
        "What is the capital of France?",
        "Explain quantum entanglement simply.",
        "What's the capital city of France?",
        "",
    ]
    frame = records(texts)
    vectors = embedder.encode(texts)
    result = semantic_duplicates(frame, vectors, SemDedupParams(threshold=0.9, clusters=2, keep="first"))
    result.check()
    ann = result.annotations
    assert ann.columns == ["id", "source_id", "semantic_cluster", "duplicate_of", "similarity"]
    dups = dict(zip(ann["id"], ann["duplicate_of"], strict=True))
    assert dups["t001"] == "t000" and dups["t004"] == "t002"
    assert result.rejects["reason"].unique().to_list() == ["semantic_duplicate"]
    assert (ann["similarity"].drop_nulls() >= 0.9).all()
    stage, _ = embed_stage(frame, embedder)
    assert stage.kept.height == 6 and stage.annotations.columns == ["id", "embedding"]


def test_cli_embed_and_semdedup(tmp_path: Path, data_dir: Path) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "run"
    first = run_cli("semdedup", "alpaca-seed-tasks", "--out", str(out), "--cache", str(cache), "--threshold", "0.9")
    assert "semdedup" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "embed", "semdedup"]
    assert manifest["stages"][1]["stats"]["encoded"] == 175
    again = run_cli("embed", "alpaca-seed-tasks", "--out", str(tmp_path / "run2"), "--cache", str(cache))
    assert "0 encoded, 175 from cache" in again.stdout
    embedded = pl.read_parquet(tmp_path / "run2" / "annotations" / "embed.parquet")
    assert embedded.height == 175 and embedded.schema["embedding"] == pl.Array(pl.Float32, 384)
