"""Benchmark: embedding engine, language identification, semantic dedup.

Prints progress lines, then one JSON object as its last line:

* ``speedup_vs_sentence_transformers``, ``mean_cosine``, ``min_cosine``: 10,000 Alpaca records
  (instruction + input + output) through curate's embedder against plain
  ``SentenceTransformer(model).encode(texts)`` with default settings, each in a fresh process
  (so neither warms the other), same machine, same run.
* ``langid_texts_per_s`` (all cores) and ``langid_single_core_texts_per_s`` on 5,000 texts.
* ``semdedup_alpaca_seconds``: semantic dedup of Alpaca 52k end to end with embeddings from the
  cache (filled first, reported as ``alpaca_embed_seconds``), plus how many of its duplicates
  MinHash near-dedup (Jaccard 0.8) did not find. ``--quick`` skips this part.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDS = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def alpaca(n: int | None = None):
    import polars as pl

    from curate.io.ingest import Ingest

    frame = pl.concat([b[0] for b in Ingest(["alpaca"]).batches()])
    return frame.head(n) if n else frame


def child(which: str, out: str) -> None:
    import numpy as np

    texts = alpaca(RECORDS)["text"].to_list()
    if which == "plain":
        from sentence_transformers import SentenceTransformer

        from curate.io.models import resolve_model

        model = SentenceTransformer(resolve_model(None))
        start = time.perf_counter()
        vectors = model.encode(texts)
    else:
        from curate.embed.encoder import Embedder

        embedder = Embedder()
        _ = embedder.precision  # model load and the CPU precision check happen before the clock
        start = time.perf_counter()
        vectors = embedder.encode(texts)
    seconds = time.perf_counter() - start
    np.save(out, np.asarray(vectors, dtype=np.float32))
    print(json.dumps({"seconds": seconds}))


def run_child(which: str, out: str) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--child", which, "--vectors", out],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def embedding_speed() -> dict:
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        plain = run_child("plain", f"{tmp}/plain.npy")
        log(f"plain sentence-transformers: {RECORDS:,} records in {plain:.1f} s")
        ours = run_child("ours", f"{tmp}/ours.npy")
        log(f"curate embedder: {RECORDS:,} records in {ours:.1f} s")
        a, b = np.load(f"{tmp}/plain.npy"), np.load(f"{tmp}/ours.npy")
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    cosine = (a * b).sum(axis=1)
    return {
        "embed_records": RECORDS,
        "plain_seconds": round(plain, 2),
        "curate_seconds": round(ours, 2),
        "plain_texts_per_s": round(RECORDS / plain, 1),
        "curate_texts_per_s": round(RECORDS / ours, 1),
        "speedup_vs_sentence_transformers": round(plain / ours, 2),
        "mean_cosine": round(float(cosine.mean()), 6),
        "min_cosine": round(float(cosine.min()), 6),
    }


def langid_speed() -> dict:
    from filters.language import detect_languages

    texts = alpaca(5000)["text"].to_list()
    start = time.perf_counter()
    single = detect_languages(texts, workers=1, min_chars=20)
    one = time.perf_counter() - start
    start = time.perf_counter()
    multi = detect_languages(texts, workers=os.cpu_count(), min_chars=20)
    many = time.perf_counter() - start
    assert single == multi
    log(f"langdetect: {len(texts) / one:.0f} texts/s on 1 core, {len(texts) / many:.0f} on {os.cpu_count()}")
    return {
        "langid_texts_per_s": round(len(texts) / many, 1),
        "langid_single_core_texts_per_s": round(len(texts) / one, 1),
        "langid_cores": os.cpu_count(),
    }


def semdedup_speed() -> dict:
    import polars as pl

    from curate.dedup.near import near_duplicates
    from curate.embed.encoder import Embedder, EmbeddingCache, embed_records
    from scorers.semdedup import semantic_duplicates

    records = alpaca()
    embedder = Embedder()
    cache = EmbeddingCache(EmbeddingCache.default_root(), embedder.key(), embedder.dimension)
    start = time.perf_counter()
    embed_records(records, embedder, cache=cache, progress=True)
    fill = time.perf_counter() - start
    log(f"Alpaca 52k embedded into the cache in {fill:.0f} s (0 if it was already there)")
    start = time.perf_counter()
    vectors, stats = embed_records(
        records, embedder, cache=EmbeddingCache(EmbeddingCache.default_root(), embedder.key(), 384)
    )
    result = semantic_duplicates(records, vectors)
    seconds = time.perf_counter() - start
    assert stats.encoded == 0
    near = near_duplicates(records)
    near_dups = set(near.rejects["id"].to_list())
    semantic = result.rejects["id"].to_list()
    missed = sum(1 for i in semantic if i not in near_dups)
    log(f"semdedup from cache: {seconds:.1f} s, {len(semantic):,} semantic duplicates, {missed:,} not found by MinHash")
    examples = result.rejects.head(3).select("text", "duplicate_of", "detail")
    for row in examples.iter_rows(named=True):
        log(f"  e.g. {row['text'][:70]!r} ~ {row['duplicate_of']} ({row['detail']})")
    return {
        "alpaca_embed_seconds": round(fill, 1),
        "semdedup_alpaca_seconds": round(seconds, 2),
        "semantic_duplicates": len(semantic),
        "semantic_duplicates_missed_by_minhash": missed,
        "minhash_near_duplicates": len(near_dups),
        "semdedup_params": result.params,
        "records": int(pl.Series(records["id"]).len()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["plain", "ours"])
    parser.add_argument("--vectors")
    parser.add_argument("--quick", action="store_true", help="skip the 52k semantic dedup")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.vectors)
    result = {"benchmark": "embedding engine"}
    result.update(embedding_speed())
    result.update(langid_speed())
    if not args.quick:
        result.update(semdedup_speed())
    result["targets"] = {"speedup_vs_sentence_transformers": ">= 2 (CPU)", "mean_cosine": ">= 0.999"}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
