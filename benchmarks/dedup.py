"""Benchmark: MinHash near-dedup speed and quality.

Prints progress lines, then one JSON object as its last line:

* ``signature_speedup_vs_datasketch``: Alpaca 52k, curate's signing from raw text (tokenize,
  hash, permute, min) against ``datasketch.MinHash.bulk`` on the same shingles (built in
  advance, untimed) with the same hash, given to datasketch as a dictionary lookup
  (precomputed, untimed): datasketch's fastest possible configuration, so the ratio is
  conservative. Medians of three runs each. ``signatures_identical`` asserts
  bit equality; ``hash_checked`` shingles were also hashed by the pure-Python ``ShingleHash``.
* ``alpaca_stage_seconds``: ``curate dedup --near alpaca`` as a CLI process (start-up, ingest,
  shingle, sign, band, verify, cluster, write), beside ``datasketch_pipeline_seconds``: one
  Python process doing json.load, ``MinHash.bulk`` (datasketch's default SHA-1 hash),
  ``MinHashLSH`` insert and query, and union-find.
* ``planted_dev_recall_j08`` and ``planted_dev_false_merge_rate`` on planted_dev.parquet with
  default parameters, and the recall per Jaccard bucket beside the banding S-curve.
* with ``--scale``: a generated corpus of short documents with planted near-duplicates
  (1,000,000 by default) run through the stage in a child process: ``scale_docs``,
  ``scale_seconds``, ``scale_peak_rss_mb``, and the same at a quarter of the size to show
  memory growing linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 3
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def python_shingles(text: str, n: int = 5) -> list[bytes]:
    tokens = unicodedata.normalize("NFKC", text).lower().split()
    if not tokens:
        return []
    if len(tokens) < n:
        return [" ".join(tokens).encode()]
    return [" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)]


def alpaca_texts() -> list[str]:
    import polars as pl

    from curate.io.ingest import Ingest

    return pl.concat([b[0] for b in Ingest(["alpaca"]).batches()])["text"].to_list()


def signature_throughput() -> dict:
    import numpy as np
    import polars as pl
    from datasketch import MinHash

    from curate.dedup.minhash import ShingleHash
    from curate.dedup.near import NearDedupParams, sign_texts

    texts = alpaca_texts()
    params = NearDedupParams()
    series = pl.Series(texts)
    sign_texts(series.head(2000), params)  # warm up thread pools and regex caches
    runs = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        shingles, ours = sign_texts(series, params)
        runs.append(time.perf_counter() - start)
    ours_seconds = statistics.median(runs)
    log(f"curate: {len(texts):,} signatures from raw text in {ours_seconds:.2f} s (median of {ROUNDS})")

    sets = [python_shingles(t) for t in texts]
    table: dict[bytes, int] = {}
    for i, doc in enumerate(sets):
        hashes = shingles.of(i)
        assert len(doc) == hashes.size, (i, len(doc), hashes.size)
        table.update(zip(doc, hashes.tolist(), strict=True))
    python_hash = ShingleHash()
    sample = list(table.items())[:: max(1, len(table) // 20000)]
    assert all(python_hash(k) == v for k, v in sample), "vectorized shingle hash differs from ShingleHash"

    runs = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        theirs = MinHash.bulk(sets, num_perm=params.num_perm, seed=params.seed, hashfunc=table.__getitem__)
        runs.append(time.perf_counter() - start)
    ds_seconds = statistics.median(runs)
    identical = all(np.array_equal(m.hashvalues, s) for m, s in zip(theirs, ours, strict=True))
    log(f"datasketch (lookup hash): {ds_seconds:.2f} s; identical: {identical}")
    start = time.perf_counter()
    MinHash.bulk(sets, num_perm=params.num_perm, seed=params.seed)
    sha1_seconds = time.perf_counter() - start
    log(f"datasketch (default sha1 hash): {sha1_seconds:.2f} s")
    return {
        "alpaca_docs": len(texts),
        "alpaca_shingles": int(shingles.hashes.size),
        "signature_seconds": round(ours_seconds, 3),
        "datasketch_seconds": round(ds_seconds, 3),
        "datasketch_sha1_seconds": round(sha1_seconds, 3),
        "signatures_per_s": round(len(texts) / ours_seconds),
        "datasketch_signatures_per_s": round(len(texts) / ds_seconds),
        "signature_speedup_vs_datasketch": round(ds_seconds / ours_seconds, 2),
        "signature_speedup_vs_datasketch_sha1": round(sha1_seconds / ours_seconds, 2),
        "signatures_identical": identical,
        "hash_checked": len(sample),
    }


def datasketch_pipeline() -> None:
    """The plain pipeline, run as a child process: prints its seconds."""
    from datasketch import MinHash, MinHashLSH

    from curate.io import catalog

    start = time.perf_counter()
    with open(catalog.resolve(catalog.lookup("alpaca"))) as handle:
        rows = json.load(handle)
    texts = ["\n\n".join(p for p in (r["instruction"], r["input"], r["output"]) if p) for r in rows]
    hashes = MinHash.bulk([python_shingles(t) for t in texts], num_perm=128, seed=1)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            session.insert(i, m)
    parent = list(range(len(texts)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, m in enumerate(hashes):
        for j in lsh.query(m):
            if j != i:
                parent[find(j)] = find(i)
    clusters = len({find(i) for i in range(len(texts))})
    print(json.dumps({"seconds": time.perf_counter() - start, "clusters": clusters}))


def stage_speed() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "curate.cli", "dedup", "--near", "alpaca", "--out", f"{tmp}/run", "--quiet"],
            check=True,
            capture_output=True,
            env=env,
            cwd=ROOT,
        )
        ours = time.perf_counter() - start
        manifest = json.loads(Path(f"{tmp}/run/manifest.json").read_text())
    log(f"curate dedup --near alpaca (CLI, end to end): {ours:.2f} s")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", "datasketch"], check=True, capture_output=True, text=True, env=env
    )
    baseline = time.perf_counter() - start
    log(f"datasketch pipeline (process, end to end): {baseline:.2f} s")
    return {
        "alpaca_stage_seconds": round(ours, 3),
        "alpaca_near_duplicates": manifest["stages"][-1]["rejected"],
        "datasketch_pipeline_seconds": round(baseline, 3),
        "datasketch_pipeline_clusters": json.loads(done.stdout.strip().splitlines()[-1])["clusters"],
        "stage_speedup_vs_datasketch_pipeline": round(baseline / ours, 2),
    }


def planted_quality() -> dict:
    import polars as pl

    from curate.dedup.near import NearDedupParams, near_duplicates
    from curate.dedup.planted import planted_records, score
    from curate.io import catalog

    frame = pl.read_parquet(catalog.resolve(catalog.lookup("planted-dedup-dev")))
    params = NearDedupParams()
    result = near_duplicates(planted_records(frame), params)
    bands, rows = params.banding()
    found = score(frame, result.annotations, bands, rows)
    log(
        f"planted dev (bands {bands} x rows {rows}): recall@0.8 {found['recall_j08']}, "
        f"false merges {found['false_merge_rate']}"
    )
    for row in found["buckets"]:
        log(
            f"  jaccard {row['jaccard']}: {row['variants']:4d} variants, recall {row['recall']:.3f}, "
            f"S-curve {row['s_curve']:.3f}"
        )
    return {
        "planted_dev_recall_j08": found["recall_j08"],
        "planted_dev_false_merge_rate": found["false_merge_rate"],
        "planted_dev_bands": bands,
        "planted_dev_rows": rows,
        "planted_dev_buckets": found["buckets"],
    }


def scale_child(docs: int) -> None:
    """Generate ``docs`` short documents (10 % planted near-copies) and run the stage."""
    import numpy as np
    import polars as pl

    from curate.dedup.near import near_duplicates
    from curate.records.schema import KIND_TEXT, conform

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(50_000)])
    lengths = rng.integers(20, 60, docs)
    words = vocab[rng.zipf(1.3, lengths.sum()) % vocab.size]
    texts = [" ".join(ws) for ws in np.split(words, np.cumsum(lengths)[:-1])]
    copies = rng.choice(docs, docs // 10, replace=False)
    for target in copies:
        source = int(rng.integers(0, docs))
        tokens = texts[source].split()
        tokens[int(rng.integers(0, len(tokens)))] = "edited"
        texts[target] = " ".join(tokens)
    ids = [f"g{i:08d}" for i in range(docs)]
    frame = conform(pl.DataFrame({"id": ids, "source_id": ids, "kind": [KIND_TEXT] * docs, "text": texts}))
    del texts, words
    start = time.perf_counter()
    result = near_duplicates(frame)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "docs": docs,
                "seconds": seconds,
                "rss_mb": rss,
                "rejected": result.rejects.height,
                "largest_cluster": int(result.annotations["cluster_size"].max()),
            }
        )
    )


def scale(docs: int) -> dict:
    out = {}
    for n, key in ((docs // 4, "quarter"), (docs, "full")):
        done = subprocess.run(
            [sys.executable, __file__, "--child", "scale", "--docs", str(n)], check=True, capture_output=True, text=True
        )
        out[key] = json.loads(done.stdout.strip().splitlines()[-1])
        log(
            f"scale {n:,} docs: {out[key]['seconds']:.1f} s, peak RSS {out[key]['rss_mb']:.0f} MB, "
            f"{out[key]['rejected']:,} near-duplicates"
        )
    return {
        "scale_docs": docs,
        "scale_seconds": round(out["full"]["seconds"], 2),
        "scale_peak_rss_mb": round(out["full"]["rss_mb"], 1),
        "scale_quarter_docs": docs // 4,
        "scale_quarter_peak_rss_mb": round(out["quarter"]["rss_mb"], 1),
        "scale_rejected": out["full"]["rejected"],
        "scale_largest_cluster": out["full"]["largest_cluster"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="store_true", help="also run the generated large corpus")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents in the scale run")
    parser.add_argument("--child", choices=["datasketch", "scale"])
    args = parser.parse_args()
    if args.child == "datasketch":
        return datasketch_pipeline()
    if args.child == "scale":
        return scale_child(args.docs)
    result = {"benchmark": "minhash near-dedup"}
    result.update(signature_throughput())
    result.update(stage_speed())
    result.update(planted_quality())
    if args.scale:
        result.update(scale(args.docs))
    result["targets"] = {
        "signature_speedup_vs_datasketch": ">= 3",
        "stage_speedup_vs_datasketch_pipeline": ">= 2",
        "planted_dev_recall_j08": ">= 0.95",
        "planted_dev_false_merge_rate": "<= 0.01",
        "scale_peak_rss_mb": "< 4096",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
