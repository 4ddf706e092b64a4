"""Benchmark: MinHash near-dedup speed and quality, each side doing the same work on the same cores.

Prints progress lines, then one JSON object as its last line (through ``targets.finish``):

* ``signature_speedup_vs_datasketch``: curate's signing from raw text (tokenize, hash, permute,
  min) against ``datasketch.MinHash.bulk`` on the same shingles (built in advance, untimed) with
  the same hash given as a dictionary lookup (precomputed, untimed): datasketch's fastest
  configuration. Both in one child pinned to one core, both warmed on 2,000 texts, alternating
  rounds, medians. Check ``signatures_identical``: every signature equal, bit for bit.
* ``signing_vs_rensa``: ``signature_docs_per_s`` (curate's ``sign_texts`` from the raw Python
  strings: series, normalize, tokenize, hash, permute, min) against ``rensa_docs_per_s`` (rensa's
  ``RMinHash``, its fastest bulk call ``digest_matrix_from_token_byte_sets``, on the same word
  5-gram shingles built in Python from the same strings, timed: rensa has no shingling of its
  own), num_perm 128. Both in one child pinned to 2 cores, both warmed on 2,000 texts,
  alternating rounds, medians. rensa's signatures are its own hash, not datasketch's; the check
  ``rensa_same_shingles`` is that both sides saw the same number of shingles per text.
* ``numba_compile_seconds``: the first signing in a fresh process with an empty numba cache
  (every kernel JIT-compiled), and ``numba_cached_load_seconds`` the same in a second process
  that finds them cached (not in ``--quick``).
* ``stage_speedup_vs_datasketch_pipeline``: ``curate dedup --near alpaca`` as a CLI process
  (start-up, ingest, shingle, sign, band, verify, cluster, write the run and its card) against a
  plain datasketch script doing the same work: ``json.load``, the same word 5-gram shingles,
  ``MinHash.bulk`` (datasketch's default SHA-1 hash), ``MinHashLSH`` with curate's bands and
  rows, every candidate verified by exact Jaccard, clusters led by the first record, and the kept
  rows and the rejects written to Parquet (it imports no curate module: the bands and rows are
  its arguments). Each a fresh process pinned to one core, alternating
  rounds, medians. Check ``same_rejects``: the two reject the same records.
* ``planted_dev_recall_j08`` / ``planted_dev_false_merge_rate`` on planted_dev.parquet (the set
  the defaults were chosen on), and ``planted_heldout_*`` on a planted set built here from Alpaca
  outputs (a corpus the defaults never saw): word swaps, deletions, insertions and substitutions
  at graded rates, true Jaccard computed on the same shingles.
* ``--scale`` runs ``benchmarks/dedup_scale.py`` instead (the out-of-core stage on a generated
  real-text corpus with planted near-duplicates, ``--docs`` of them, 1,000,000 by default, and
  the DataTrove peer run on ``--peer-docs``, 300,000; ``--scale --peer``: the peer run alone).

``--quick``: 3,000 records for the speed parts, one round, a 300-source held-out set, no scale,
no compile timing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import alternate, log, machine, median, perturb_words, run_json, run_timed  # noqa: E402
from benchmarks.targets import finish, target  # noqa: E402

WARMUP = 2000


def python_shingles(text: str, n: int = 5) -> list[bytes]:
    tokens = unicodedata.normalize("NFKC", text).lower().split()
    if not tokens:
        return []
    if len(tokens) < n:
        return [" ".join(tokens).encode()]
    return [" ".join(tokens[i : i + n]).encode() for i in range(len(tokens) - n + 1)]


def alpaca_rows(limit: int | None) -> list[dict]:
    from curate.io import catalog

    rows = json.loads(Path(catalog.resolve(catalog.lookup("alpaca"))).read_text())
    return rows[:limit] if limit else rows


def alpaca_texts(limit: int | None) -> list[str]:
    import polars as pl

    from curate.io.ingest import Ingest

    texts = pl.concat([b[0] for b in Ingest(["alpaca"]).batches()])["text"]
    return (texts.head(limit) if limit else texts).to_list()


def signature_child(limit: int | None, rounds: int) -> None:
    """Both signers in this (pinned) process, warmed, alternating; prints their medians and the check."""
    import numpy as np
    import polars as pl
    from datasketch import MinHash

    from curate.dedup.minhash import ShingleHash
    from curate.dedup.near import NearDedupParams, sign_texts

    texts = alpaca_texts(limit)
    params = NearDedupParams()
    series = pl.Series(texts)
    shingles, ours = sign_texts(series, params)
    sets = [python_shingles(t) for t in texts]
    table: dict[bytes, int] = {}
    for i, doc in enumerate(sets):
        hashes = shingles.of(i)
        assert len(doc) == hashes.size, (i, len(doc), hashes.size)
        table.update(zip(doc, hashes.tolist(), strict=True))
    python_hash = ShingleHash()
    sample = list(table.items())[:: max(1, len(table) // 20000)]
    hash_ok = all(python_hash(k) == v for k, v in sample)

    def theirs() -> list:
        return MinHash.bulk(sets, num_perm=params.num_perm, seed=params.seed, hashfunc=table.__getitem__)

    sign_texts(series.head(WARMUP), params)
    MinHash.bulk(sets[:WARMUP], num_perm=params.num_perm, seed=params.seed, hashfunc=table.__getitem__)
    runs: dict[str, list[float]] = {"curate": [], "datasketch": []}
    for _ in range(rounds):
        start = time.perf_counter()
        _, ours = sign_texts(series, params)
        runs["curate"].append(time.perf_counter() - start)
        start = time.perf_counter()
        minhashes = theirs()
        runs["datasketch"].append(time.perf_counter() - start)
    identical = all(np.array_equal(m.hashvalues, s) for m, s in zip(minhashes, ours, strict=True))
    start = time.perf_counter()
    MinHash.bulk(sets, num_perm=params.num_perm, seed=params.seed)
    sha1 = time.perf_counter() - start
    print(
        json.dumps(
            {
                "docs": len(texts),
                "shingles": int(shingles.hashes.size),
                "curate": statistics.median(runs["curate"]),
                "datasketch": statistics.median(runs["datasketch"]),
                "datasketch_sha1": sha1,
                "identical": identical,
                "hash_ok": hash_ok,
                "hash_checked": len(sample),
            }
        )
    )


def signature_throughput(limit: int | None, rounds: int) -> tuple[dict, dict]:
    done = run_json(
        [sys.executable, __file__, "--child", "signatures", *_limit(limit), "--rounds", str(rounds)], cores=1
    )
    log(
        f"signatures of {done['docs']:,} texts on 1 core: curate {done['curate']:.2f} s, datasketch (lookup hash) "
        f"{done['datasketch']:.2f} s, datasketch (sha1) {done['datasketch_sha1']:.2f} s; identical: {done['identical']}"
    )
    figures = {
        "signature_docs": done["docs"],
        "signature_shingles": done["shingles"],
        "signature_seconds": round(done["curate"], 3),
        "datasketch_seconds": round(done["datasketch"], 3),
        "datasketch_sha1_seconds": round(done["datasketch_sha1"], 3),
        "signatures_per_s": round(done["docs"] / done["curate"]),
        "datasketch_signatures_per_s": round(done["docs"] / done["datasketch"]),
        "signature_speedup_vs_datasketch": round(done["datasketch"] / done["curate"], 2),
        "signature_speedup_vs_datasketch_sha1": round(done["datasketch_sha1"] / done["curate"], 2),
        "hash_checked": done["hash_checked"],
        "signature_settings": {
            "curate": "sign_texts, pinned to 1 core, warmed on 2,000 texts",
            "datasketch": "MinHash.bulk, lookup hash of the same shingles, 1 core, warmed on 2,000 texts",
            "rounds": rounds,
            "order": "alternating, median",
        },
    }
    return figures, {"signatures_identical": done["identical"], "shingle_hash_matches_python": done["hash_ok"]}


def rensa_child(limit: int | None, rounds: int) -> None:
    """curate's signing and rensa's in this (2-core) process, warmed, alternating; prints their medians."""
    import polars as pl
    from rensa import RMinHash

    from curate.dedup.near import NearDedupParams, sign_texts

    texts = alpaca_texts(limit)
    params = NearDedupParams()

    def ours() -> tuple[float, object]:
        start = time.perf_counter()
        shingles, _ = sign_texts(pl.Series(texts, dtype=pl.String), params)
        return time.perf_counter() - start, shingles

    def theirs() -> tuple[float, float, list]:
        start = time.perf_counter()
        sets = [python_shingles(t) for t in texts]
        shingled = time.perf_counter()
        RMinHash.digest_matrix_from_token_byte_sets(sets, params.num_perm, params.seed)
        done = time.perf_counter()
        return done - start, done - shingled, sets

    sign_texts(pl.Series(texts[:WARMUP], dtype=pl.String), params)
    warm = [python_shingles(t) for t in texts[:WARMUP]]
    RMinHash.digest_matrix_from_token_byte_sets(warm, params.num_perm, params.seed)
    runs: dict[str, list[float]] = {"curate": [], "rensa": [], "rensa_hashing": []}
    for _ in range(rounds):
        seconds, shingles = ours()
        runs["curate"].append(seconds)
        seconds, hashing, sets = theirs()
        runs["rensa"].append(seconds)
        runs["rensa_hashing"].append(hashing)
    same = shingles.counts.tolist() == [len(s) for s in sets]
    print(json.dumps({"docs": len(texts), **{k: statistics.median(v) for k, v in runs.items()}, "same": same}))


def rensa_throughput(limit: int | None, rounds: int) -> tuple[dict, dict]:
    done = run_json([sys.executable, __file__, "--child", "rensa", *_limit(limit), "--rounds", str(rounds)], cores=2)
    ours, theirs = done["docs"] / done["curate"], done["docs"] / done["rensa"]
    log(
        f"signing {done['docs']:,} raw texts on 2 cores: curate {done['curate']:.3f} s ({ours:,.0f} docs/s), "
        f"rensa {done['rensa']:.3f} s ({theirs:,.0f} docs/s; its hashing alone {done['rensa_hashing']:.3f} s)"
    )
    figures = {
        "signature_docs_per_s": round(ours),
        "rensa_docs_per_s": round(theirs),
        "rensa_hashing_docs_per_s": round(done["docs"] / done["rensa_hashing"]),
        "signing_vs_rensa": round(ours / theirs, 2),
        "rensa_settings": {
            "curate": "sign_texts(pl.Series(texts)), from the Python strings, 2 cores, warmed on 2,000 texts",
            "rensa": "rensa 0.5.0 RMinHash.digest_matrix_from_token_byte_sets(num_perm=128) on word 5-gram "
            "shingles built in Python (NFKC, lowercase, split) from the same strings, 2 cores, warmed on 2,000",
            "rounds": rounds,
            "order": "alternating, median",
        },
    }
    return figures, {"rensa_same_shingles": done["same"]}


def compile_child() -> None:
    """Seconds of the first signing in this process (numba's cache dir is set by the parent)."""
    start = time.perf_counter()
    import polars as pl

    from curate.dedup.near import NearDedupParams, sign_texts

    sign_texts(pl.Series(["a first text to sign, long enough for a few shingles", ""]), NearDedupParams())
    print(json.dumps({"seconds": time.perf_counter() - start}))


def compile_time() -> dict:
    """numba's JIT compile (empty cache) and the cached load (second process), each a fresh process."""
    from benchmarks.common import child_env

    with tempfile.TemporaryDirectory() as cache:
        env = child_env(NUMBA_CACHE_DIR=cache)
        cold = run_json([sys.executable, __file__, "--child", "compile"], env=env, cores=2)["seconds"]
        warm = run_json([sys.executable, __file__, "--child", "compile"], env=env, cores=2)["seconds"]
    log(f"numba kernels: first signing {cold:.1f} s with an empty cache, {warm:.2f} s cached")
    return {"numba_compile_seconds": round(cold, 2), "numba_cached_load_seconds": round(warm, 2)}


def _limit(limit: int | None) -> list[str]:
    return ["--limit", str(limit)] if limit else []


def datasketch_child(path: str, out: str, bands: str, rows: str) -> None:
    """The plain pipeline (one process): prints its seconds and the rows it rejected."""
    start = time.perf_counter()
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasketch import MinHash, MinHashLSH

    bands, rows_per_band = int(bands), int(rows)  # curate's banding, given by the parent: no curate import here
    with open(path) as handle:
        rows = json.load(handle)
    texts = ["\n\n".join(p for p in (r["instruction"], r["input"], r["output"]) if p) for r in rows]
    shingles = [python_shingles(t) for t in texts]
    hashes = MinHash.bulk(shingles, num_perm=128, seed=1)
    lsh = MinHashLSH(threshold=0.8, num_perm=128, params=(bands, rows_per_band))
    with lsh.insertion_session() as session:
        for i, m in enumerate(hashes):
            if shingles[i]:
                session.insert(i, m)
    sets = [set(s) for s in shingles]
    leader = list(range(len(texts)))
    assigned = [False] * len(texts)
    for i, m in enumerate(hashes):
        if assigned[i] or not shingles[i]:
            continue
        verified = [j for j in lsh.query(m) if j != i and len(sets[i] & sets[j]) >= 0.8 * len(sets[i] | sets[j])]
        if verified:  # a record with a verified edge leads, even if all its partners are taken
            assigned[i] = True
            for j in verified:
                if not assigned[j]:
                    assigned[j], leader[j] = True, i
    kept = [dict(r, text=t) for i, (r, t) in enumerate(zip(rows, texts, strict=True)) if leader[i] == i]
    rejected = [dict(rows[i], text=texts[i], duplicate_of=leader[i]) for i in range(len(rows)) if leader[i] != i]
    Path(out).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept), f"{out}/train.parquet", compression="zstd")
    pq.write_table(pa.Table.from_pylist(rejected or [{"duplicate_of": 0}]), f"{out}/rejects.parquet")
    rejected_rows = [i for i in range(len(rows)) if leader[i] != i]
    print(
        json.dumps(
            {"seconds": time.perf_counter() - start, "rejected": rejected_rows, "bands": bands, "rows": rows_per_band}
        )
    )


def stage_speed(limit: int | None, rounds: int) -> tuple[dict, dict]:
    import polars as pl

    from curate.dedup.near import NearDedupParams

    with tempfile.TemporaryDirectory() as tmp:
        if limit:
            source = f"{tmp}/alpaca_head.json"
            Path(source).write_text(json.dumps(alpaca_rows(limit)))
        else:
            from curate.io import catalog

            source = str(catalog.resolve(catalog.lookup("alpaca")))
        stage_input = source if limit else "alpaca"
        count = iter(range(10**6))

        def ours() -> dict:
            out = f"{tmp}/run{next(count)}"
            command = [sys.executable, "-m", "curate.cli", "dedup", "--near", stage_input, "--out", out, "--quiet"]
            seconds = run_timed(command, cores=1)
            rejects = pl.read_parquet(f"{out}/rejects/near_dup.parquet")["source_id"].cast(pl.Int64).to_list()
            return {"seconds": seconds, "rejected": sorted(rejects)}

        def theirs() -> dict:
            banding = [str(x) for x in NearDedupParams().banding()]
            command = [sys.executable, __file__, "--child", "datasketch", source, f"{tmp}/ds{next(count)}", *banding]
            start = time.perf_counter()
            done = run_json(command, cores=1)
            return {**done, "seconds": time.perf_counter() - start}

        runs = alternate({"curate": ours, "datasketch": theirs}, rounds)
    t_ours, t_theirs = median(runs["curate"]), median(runs["datasketch"])
    banding = (runs["datasketch"][0]["bands"], runs["datasketch"][0]["rows"])
    same = all(r["rejected"] == runs["curate"][0]["rejected"] for r in runs["curate"] + runs["datasketch"])
    log(f"curate dedup --near (CLI process, 1 core): {t_ours:.2f} s; datasketch script (1 core): {t_theirs:.2f} s")
    figures = {
        "stage_records": limit or 52002,
        "alpaca_stage_seconds": round(t_ours, 3),
        "alpaca_near_duplicates": len(runs["curate"][0]["rejected"]),
        "datasketch_pipeline_seconds": round(t_theirs, 3),
        "datasketch_pipeline_near_duplicates": len(runs["datasketch"][0]["rejected"]),
        "stage_speedup_vs_datasketch_pipeline": round(t_theirs / t_ours, 2),
        "stage_settings": {
            "work": "read JSON, word 5-gram shingles, 128 MinHash permutations, LSH with the same bands and rows, "
            "exact Jaccard verification at 0.8, first record kept, kept rows and rejects written to Parquet",
            "curate": f"`curate dedup --near {'PATH' if limit else 'alpaca'}` process, card without figures",
            "datasketch": f"one Python process, MinHash.bulk (sha1), MinHashLSH(params={banding})",
            "cores": "each process pinned to 1 core (taskset)",
            "rounds": rounds,
            "order": "alternating, median; start-up included on both sides",
        },
    }
    return figures, {"same_rejects": same}


def heldout_planted(sources: int) -> pl.DataFrame:  # noqa: F821
    """A planted set in planted_dev's columns, from Alpaca outputs (>= 30 words), seeded."""
    import random

    import polars as pl

    rng = random.Random(20)
    outputs = sorted({r["output"] for r in alpaca_rows(None) if len(r["output"].split()) >= 30})
    picked = rng.sample(outputs, 2 * sources)
    vocab = sorted({w for t in picked[:200] for w in t.split()})
    rows = []
    for i, text in enumerate(picked[:sources]):
        words = text.split()
        kind, rate = rng.choice(["swap", "delete", "insert", "substitute"]), rng.choice([0.01, 0.03, 0.06, 0.1, 0.2])
        perturb_words(words, kind, rate, rng, vocab)
        variant = " ".join(words)
        a, b = set(python_shingles(text)), set(python_shingles(variant))
        rows.append({"id": f"s{i}", "text": text, "copy_of": "", "true_jaccard": None, "perturbation": None})
        rows.append(
            {
                "id": f"v{i}",
                "text": variant,
                "copy_of": f"s{i}",
                "true_jaccard": len(a & b) / len(a | b),
                "perturbation": f"{kind}:{rate}",
            }
        )
    rows += [
        {"id": f"d{i}", "text": t, "copy_of": "", "true_jaccard": None, "perturbation": None}
        for i, t in enumerate(picked[sources:])
    ]
    return pl.DataFrame(
        rows,
        schema={
            "id": pl.String,
            "text": pl.String,
            "copy_of": pl.String,
            "true_jaccard": pl.Float64,
            "perturbation": pl.String,
        },
    )


def planted_quality(heldout_sources: int) -> dict:
    import polars as pl

    from curate.dedup.near import NearDedupParams, near_duplicates
    from curate.dedup.planted import planted_records, score
    from curate.io import catalog

    params = NearDedupParams()
    bands, rows = params.banding()
    sets = {
        "dev": pl.read_parquet(catalog.resolve(catalog.lookup("planted-dedup-dev"))),
        "heldout": heldout_planted(heldout_sources),
    }
    out: dict = {"planted_bands": bands, "planted_rows": rows, "planted_heldout_sources": heldout_sources}
    for name, frame in sets.items():
        found = score(frame, near_duplicates(planted_records(frame), params).annotations, bands, rows)
        log(
            f"planted {name} (bands {bands} x rows {rows}): recall@0.8 {found['recall_j08']}, "
            f"false merges {found['false_merge_rate']}"
        )
        for row in found["buckets"]:
            log(
                f"  jaccard {row['jaccard']}: {row['variants']:4d} variants, recall {row['recall']:.3f}, "
                f"S-curve {row['s_curve']:.3f}"
            )
        out[f"planted_{name}_recall_j08"] = found["recall_j08"]
        out[f"planted_{name}_false_merge_rate"] = found["false_merge_rate"]
        out[f"planted_{name}_buckets"] = found["buckets"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs, one round (the CI check)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each speed comparison")
    parser.add_argument("--scale", action="store_true", help="also run the generated large corpus")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents in the scale run")
    parser.add_argument("--peer-docs", type=int, default=300_000, help="documents in the DataTrove peer run")
    parser.add_argument("--peer", action="store_true", help="with --scale: only the DataTrove peer run")
    parser.add_argument("--limit", type=int, help="first N Alpaca records in the speed parts (default all)")
    parser.add_argument("--child", choices=["signatures", "rensa", "compile", "datasketch"])
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scale and not args.child:  # the scale run is its own benchmark now
        from benchmarks.dedup_scale import main as scale_main

        flags = [*(["--quick"] if args.quick else []), *(["--peer"] if args.peer else [])]
        return scale_main([*flags, "--docs", str(args.docs), "--peer-docs", str(args.peer_docs)])
    if args.child == "signatures":
        return signature_child(args.limit, args.rounds)
    if args.child == "rensa":
        return rensa_child(args.limit, args.rounds)
    if args.child == "compile":
        return compile_child()
    if args.child == "datasketch":
        return datasketch_child(*args.paths)
    limit = 3000 if args.quick else args.limit
    rounds = 1 if args.quick else args.rounds
    figures: dict = {"benchmark": "minhash near-dedup", "quick": args.quick, "machine": machine()}
    signatures, checks = signature_throughput(limit, rounds)
    versus_rensa, rensa_checks = rensa_throughput(limit, rounds)
    stage, stage_checks = stage_speed(limit, rounds)
    figures.update(signatures | versus_rensa | stage | planted_quality(300 if args.quick else 2000))
    if not args.quick:
        figures.update(compile_time())
    checks.update(rensa_checks | stage_checks)
    targets = {
        "signature_speedup_vs_datasketch": target(figures["signature_speedup_vs_datasketch"], ">=", 3),
        "signing_vs_rensa": target(figures["signing_vs_rensa"], ">=", 2),
        "stage_speedup_vs_datasketch_pipeline": target(figures["stage_speedup_vs_datasketch_pipeline"], ">=", 2),
        "planted_dev_recall_j08": target(figures["planted_dev_recall_j08"], ">=", 0.95),
        "planted_dev_false_merge_rate": target(figures["planted_dev_false_merge_rate"], "<=", 0.01),
        "planted_heldout_recall_j08": target(figures["planted_heldout_recall_j08"], ">=", 0.95),
        "planted_heldout_false_merge_rate": target(figures["planted_heldout_false_merge_rate"], "<=", 0.01),
    }
    finish(figures, targets, checks)


if __name__ == "__main__":
    main()
