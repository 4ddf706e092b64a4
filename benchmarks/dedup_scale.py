"""Benchmark: out-of-core near dedup at pretraining scale (``python benchmarks/dedup.py --scale`` too).

A generated corpus of real-text documents: each is 8 to 14 sentences drawn (seeded) from the
shared texts (Alpaca instructions and outputs, LIMA responses, the social posts), about 1 KB;
10 % of the documents are planted near-copies of another one (word swaps, deletions,
insertions or substitutions at graded rates, or an exact copy, as the held-out planted set of
``benchmarks/dedup.py``), each with its true word 5-gram Jaccard. At N/10 and N documents
(``--docs``, 1,000,000 by default) it writes the corpus as Parquet shards (untimed, in its own
process), then runs :func:`curate.dedup.out_of_core.near_duplicates_out_of_core` in a fresh
child whose wall time and peak RSS (the child and anything it starts: ``os.wait4``'s rusage)
are the figures, and scores the clusters against the planted pairs.

Check ``identical_to_in_memory``: on the small size, the in-memory stage (another child) gives
the same kept ids, rejects and annotations; ``records_add_up``: in = kept + rejected.
The last line is one JSON object (``targets.finish``): ``scale_docs``, ``scale_seconds``,
``scale_peak_rss_mb``, ``scale_recall_j08``, ``scale_false_merge_rate`` (the largest size),
the same with ``scale_small_``, ``scale_time_growth`` and ``targets``.

The peer run (``--peer-docs``, 300,000 by default; ``--peer`` runs it alone): the same
generator's corpus, split into as many Parquet files as DataTrove tasks (2, untimed), goes
through DataTrove's MinHash deduplication, its four local stages with default settings
(``MinhashConfig()``: 5-grams, 14 buckets of 8 hashes) on ``LocalPipelineExecutor``s of 2
workers (signatures and filter 2 tasks, one a file; buckets 14 tasks; clustering 1, as it
requires), the filter writing kept and removed documents to Parquet; and through ours (the
out-of-core stage) on the same two files. Each side is a fresh child on the same 2 cores; its
wall time (imports included) and peak RSS are its figures. Recall for both comes from which
documents were removed: a planted copy with J >= 0.8 is found when it or its source was
removed; a false removal is a removed document beyond one per planted pair with J >= 0.5.
Keys: ``datatrove_seconds``, ``datatrove_recall_j08``, ``speedup_vs_datatrove`` and ours
beside them (``peer_curate_seconds``, ``peer_curate_recall_j08``, ...). Checks
``peer_records_add_up``: kept + removed = documents on both sides.

``--quick``: 3,000 and 300 documents, a 2,000-document peer run (seconds; what the test runs).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import child_env, log, machine, perturb_words  # noqa: E402
from benchmarks.targets import finish, target  # noqa: E402

SHARD_ROWS = 50_000  # also the generator's unit: --quick's 300 and 3,000 are one shard each
PARTITIONS = 16
COPY_SHARE = 0.1
PEER_TASKS = 2  # DataTrove's workers and tasks; the peer corpus is split into this many files
PEER_CORES = 2


def python_shingles(text: str, n: int = 5) -> set[str]:
    tokens = unicodedata.normalize("NFKC", text).lower().split()
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def sentence_pool() -> list[str]:
    """Distinct real sentences (5 to 60 words) from the shared texts, in a fixed order."""
    from curate.io import catalog

    def path(name: str) -> Path:
        return Path(catalog.resolve(catalog.lookup(name)))

    texts: list[str] = []
    for row in json.loads(path("alpaca").read_text()):
        texts += [row["instruction"], row["output"]]
    for line in path("lima").open():
        texts += json.loads(line)["conversations"]
    texts += path("social-posts").read_text().split("\n------\n")
    split = re.compile(r"(?<=[.!?])\s+|\n+")
    seen: dict[str, None] = {}
    for text in texts:
        for sentence in split.split(text):
            sentence = " ".join(sentence.split())
            if 5 <= len(sentence.split()) <= 60:
                seen.setdefault(sentence, None)
    return list(seen)


def perturb(text: str, rng: random.Random, vocab: list[str]) -> tuple[str, str]:
    """A near-copy and how it was made (as benchmarks/dedup.py's held-out planted set)."""
    kind = rng.choice(["swap", "delete", "insert", "substitute", "exact"])
    if kind == "exact":
        return text, "exact"
    rate = rng.choice([0.01, 0.03, 0.06, 0.1, 0.2])
    words = text.split()
    perturb_words(words, kind, rate, rng, vocab)
    return " ".join(words), f"{kind}:{rate}"


def generate_child(docs: int, folder: str) -> None:
    """Write ``docs`` documents as Parquet shards and the planted pairs (``planted/``), a shard
    at a time (only two shards' texts in memory, so 10M documents generate in bounded memory).
    Half of a shard's copies are of documents of the shard before it, so pairs cross shards."""
    import numpy as np
    import polars as pl

    from curate.records.schema import KIND_TEXT, conform

    pool = sentence_pool()
    vocab = sorted({w for s in pool[:5000] for w in s.split()})
    rng = np.random.default_rng(docs)
    prng = random.Random(docs)
    out = Path(folder)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / "planted").mkdir(parents=True, exist_ok=True)
    previous: tuple[int, list[str], np.ndarray] | None = None  # start, texts, still free to be a source
    total_bytes = 0
    for begin in range(0, docs, SHARD_ROWS):
        rows = min(SHARD_ROWS, docs - begin)
        counts = rng.integers(8, 15, rows)
        picks = rng.integers(0, len(pool), int(counts.sum()))
        bounds = np.concatenate([[0], np.cumsum(counts)])
        texts = [" ".join(pool[j] for j in picks[bounds[i] : bounds[i + 1]]) for i in range(rows)]
        order = rng.permutation(rows)
        n_copies = int(rows * COPY_SHARE)
        copies = order[:n_copies]
        free = np.ones(rows, dtype=bool)
        free[copies] = False
        sources: list[tuple[int, str]] = []  # (global number, text)
        local = order[n_copies : 2 * n_copies]
        earlier = np.flatnonzero(previous[2]) if previous is not None else np.zeros(0, dtype=np.int64)
        earlier = rng.permutation(earlier)[: n_copies // 2]
        for i, j in enumerate(local.tolist()):
            if i < earlier.size:
                previous[2][earlier[i]] = False
                sources.append((previous[0] + int(earlier[i]), previous[1][earlier[i]]))
            else:
                free[j] = False
                sources.append((begin + j, texts[j]))
        copy_of = [""] * rows
        jaccard: list[float | None] = [None] * rows
        how: list[str | None] = [None] * rows
        for copy, (source, text) in zip(copies.tolist(), sources, strict=True):
            texts[copy], how[copy] = perturb(text, prng, vocab)
            a, b = python_shingles(text), python_shingles(texts[copy])
            copy_of[copy], jaccard[copy] = f"d{source:010d}", len(a & b) / len(a | b)
        ids = [f"d{begin + i:010d}" for i in range(rows)]
        name = f"part-{begin // SHARD_ROWS:05d}.parquet"
        pl.DataFrame(
            {"id": ids, "copy_of": copy_of, "true_jaccard": jaccard, "perturbation": how},
            schema={"id": pl.String, "copy_of": pl.String, "true_jaccard": pl.Float64, "perturbation": pl.String},
        ).write_parquet(out / "planted" / name)
        frame = pl.DataFrame(
            {"id": ids, "source": ["scale"] * rows, "source_id": ids, "kind": [KIND_TEXT] * rows, "text": texts}
        )
        conform(frame).write_parquet(out / "shards" / name)
        total_bytes += sum(len(t.encode()) for t in texts)
        previous = (begin, texts, free)
    print(json.dumps({"docs": docs, "bytes": total_bytes, "pool": len(pool)}))


def split_child(folder: str, files: int) -> None:
    """The generated shards rewritten as ``files`` Parquet files of consecutive records (``peer/``)."""
    import polars as pl

    out = Path(folder)
    records = pl.read_parquet(sorted((out / "shards").glob("part-*.parquet")))
    (out / "peer").mkdir(exist_ok=True)
    size = -(-records.height // files)
    for f in range(files):
        records.slice(f * size, size).write_parquet(out / "peer" / f"part-{f:05d}.parquet")
    print(json.dumps({"files": files, "rows": records.height}))


def dedup_child(folder: str, inputs: str = "shards") -> None:
    """The out-of-core stage over the Parquet files in ``folder/inputs`` (the measured process)."""
    from curate.dedup.out_of_core import near_duplicates_out_of_core

    out = Path(folder)
    shards = sorted((out / inputs).glob("part-*.parquet"))
    start = time.perf_counter()
    done = near_duplicates_out_of_core(shards, out / "work", partitions=PARTITIONS)
    seconds = time.perf_counter() - start
    outputs = [{k: str(v) for k, v in s.items()} for s in done.shards]
    print(
        json.dumps(
            {
                "seconds": seconds,
                "n_in": done.n_in,
                "kept": done.kept,
                "rejected": done.rejected,
                "outputs": outputs,
                "stats": done.stats,
            },
            default=str,
        )
    )


def datatrove_child(folder: str, tasks: int) -> None:
    """DataTrove's four local MinHash stages, default settings, over ``folder/peer`` (the measured process)."""
    import polars as pl
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import ParquetReader
    from datatrove.pipeline.writers import ParquetWriter

    out = Path(folder)
    work = out / "datatrove"
    config = MinhashConfig()
    start = time.perf_counter()
    signatures = LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(out / "peer")),
            MinhashDedupSignature(output_folder=str(work / "signatures"), config=config),
        ],
        tasks=tasks,
        workers=tasks,
        logging_dir=str(work / "logs" / "signatures"),
    )
    buckets = LocalPipelineExecutor(
        pipeline=[
            MinhashDedupBuckets(
                input_folder=str(work / "signatures"), output_folder=str(work / "buckets"), config=config
            )
        ],
        tasks=config.num_buckets,
        workers=tasks,
        logging_dir=str(work / "logs" / "buckets"),
        depends=signatures,
    )
    clusters = LocalPipelineExecutor(
        pipeline=[
            MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove"), config=config)
        ],
        tasks=1,
        logging_dir=str(work / "logs" / "clusters"),
        depends=buckets,
    )
    filtered = LocalPipelineExecutor(
        pipeline=[
            ParquetReader(str(out / "peer")),
            MinhashDedupFilter(
                input_folder=str(work / "remove"), exclusion_writer=ParquetWriter(str(work / "removed"))
            ),
            ParquetWriter(str(work / "kept")),
        ],
        tasks=tasks,
        workers=tasks,
        logging_dir=str(work / "logs" / "filter"),
        depends=clusters,
    )
    filtered.run()
    seconds = time.perf_counter() - start
    removed = pl.read_parquet(sorted((work / "removed").glob("*.parquet")), columns=["id"])
    kept = pl.read_parquet(sorted((work / "kept").glob("*.parquet")), columns=["id"])
    removed.write_parquet(out / "datatrove-removed.parquet")
    version = importlib.metadata.version("datatrove")
    print(json.dumps({"seconds": seconds, "kept": kept.height, "removed": removed.height, "version": version}))


def memory_child(folder: str) -> None:
    """The in-memory stage over the same records; writes its kept ids, rejects and annotations."""
    import polars as pl

    from curate.dedup.near import near_duplicates

    out = Path(folder)
    records = pl.concat([pl.read_parquet(p) for p in sorted((out / "shards").glob("part-*.parquet"))])
    result = near_duplicates(records)
    (out / "memory").mkdir(exist_ok=True)
    result.kept.select("id").write_parquet(out / "memory" / "kept.parquet")
    result.rejects.write_parquet(out / "memory" / "rejects.parquet")
    result.annotations.write_parquet(out / "memory" / "annotations.parquet")
    print(json.dumps({"rejected": result.rejects.height}))


def tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants now, summed (MB, from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    pending, pages = [root], 0
    while pending:
        pid = pending.pop()
        pending += children.get(pid, [])
        with contextlib.suppress(OSError, IndexError, ValueError):
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measured(command: list[str], cores: int | None = None, tree: bool = False) -> tuple[dict, float, float]:
    """Run a child printing one JSON line last: (its answer, wall seconds, peak RSS MB); ``cores``
    pins it (and what it starts) to the first N CPUs. The peak RSS is ``os.wait4``'s (the largest
    process among the child and the descendants it waited for), or with ``tree`` the larger of that
    and the peak of the whole tree's summed RSS, sampled every 0.2 s (DataTrove's workers are
    children of a forkserver that the child never waits for)."""
    if cores is not None:
        command = ["taskset", "-c", f"0-{cores - 1}", *command]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=child_env(), cwd=ROOT)
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                peak[0] = max(peak[0], tree_rss_mb(child.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        if tree:
            sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        stop.set()
        if tree:
            sampler.join()
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        stdout.seek(0)
        stderr.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{stderr.read()[-4000:]}")
        answer = json.loads(stdout.read().strip().splitlines()[-1])
    return answer, seconds, max(usage.ru_maxrss / 1024, peak[0])


def same_as_memory(folder: Path, outputs: list[dict]) -> bool:
    import polars as pl

    annotations = pl.concat([pl.read_parquet(s["annotations"]) for s in outputs])
    rejects = pl.concat([pl.read_parquet(s["rejects"]) for s in outputs])
    kept = pl.concat([pl.read_parquet(s["kept"], columns=["id"]) for s in outputs])
    memory = folder / "memory"
    return (
        annotations.equals(pl.read_parquet(memory / "annotations.parquet"))
        and rejects.equals(pl.read_parquet(memory / "rejects.parquet"))
        and kept.equals(pl.read_parquet(memory / "kept.parquet"))
    )


def one_size(docs: int, folder: Path, compare: bool) -> tuple[dict, dict]:
    import polars as pl

    from curate.dedup.near import NearDedupParams
    from curate.dedup.planted import score

    me = [sys.executable, __file__, "--child"]
    made, made_seconds, _ = measured([*me, "generate", "--docs", str(docs), str(folder)])
    log(
        f"{docs:,} documents ({made['bytes'] / 1e6:.0f} MB of text, {made['pool']:,} sentences) in {made_seconds:.0f} s"
    )
    done, seconds, rss = measured([*me, "dedup", str(folder)])
    planted = pl.read_parquet(folder / "planted" / "*.parquet")
    clusters = pl.concat([pl.read_parquet(s["annotations"], columns=["id", "cluster_id"]) for s in done["outputs"]])
    found = score(planted, clusters, *NearDedupParams().banding())
    checks = {"records_add_up": done["n_in"] == done["kept"] + done["rejected"] == docs}
    if compare:
        measured([*me, "memory", str(folder)])
        checks["identical_to_in_memory"] = same_as_memory(folder, done["outputs"])
    log(
        f"out of core, {docs:,} docs: {seconds:.1f} s, peak RSS {rss:.0f} MB, {done['rejected']:,} near-duplicates, "
        f"recall@0.8 {found['recall_j08']}, false merges {found['false_merge_rate']}; checks {checks}"
    )
    figures = {
        "docs": docs,
        "text_mb": round(made["bytes"] / 1e6, 1),
        "seconds": round(seconds, 2),
        "stage_seconds": round(done["seconds"], 2),
        "peak_rss_mb": round(rss, 1),
        "rejected": done["rejected"],
        "recall_j08": found["recall_j08"],
        "false_merge_rate": found["false_merge_rate"],
        "candidate_pairs": done["stats"]["candidate_pairs"],
        "verified_edges": done["stats"]["verified_edges"],
        "buckets": found["buckets"],
    }
    return figures, checks


def removal_scores(planted, removed: set[str], docs: int) -> dict:
    """Recall at J >= 0.8 and the false removal rate from the removed ids alone (both peers alike):
    a planted copy is found when it or its source was removed; every removed document beyond one
    per planted pair with J >= 0.5 is a false removal."""
    import polars as pl

    pairs = planted.filter(pl.col("copy_of") != "")
    copies, sources, jaccard = pairs["id"].to_list(), pairs["copy_of"].to_list(), pairs["true_jaccard"].to_list()
    found = [c in removed or s in removed for c, s, j in zip(copies, sources, jaccard, strict=True) if j >= 0.8]
    near = [(c, s) for c, s, j in zip(copies, sources, jaccard, strict=True) if j >= 0.5]
    members = {d for pair in near for d in pair}
    wrong = len(removed - members) + sum(max(0, (c in removed) + (s in removed) - 1) for c, s in near)
    return {
        "recall_j08": round(sum(found) / len(found), 4) if found else None,
        "false_removal_rate": round(wrong / docs, 4),
    }


def peer_run(docs: int, folder: Path) -> tuple[dict, dict]:
    """DataTrove's MinHash pipeline and ours on the same ``docs``-document corpus, 2 files, 2 cores."""
    import polars as pl

    me = [sys.executable, __file__, "--child"]
    made, made_seconds, _ = measured([*me, "generate", "--docs", str(docs), str(folder)])
    measured([*me, "split", "--tasks", str(PEER_TASKS), str(folder)])
    log(f"peer corpus: {docs:,} documents ({made['bytes'] / 1e6:.0f} MB) in {PEER_TASKS} files, {made_seconds:.0f} s")
    planted = pl.read_parquet(folder / "planted" / "*.parquet")
    theirs, their_seconds, their_rss = measured(
        [*me, "datatrove", "--tasks", str(PEER_TASKS), str(folder)], cores=PEER_CORES, tree=True
    )
    their_scores = removal_scores(planted, set(pl.read_parquet(folder / "datatrove-removed.parquet")["id"]), docs)
    ours, our_seconds, our_rss = measured([*me, "dedup", "--inputs", "peer", str(folder)], cores=PEER_CORES, tree=True)
    our_removed = pl.concat([pl.read_parquet(s["rejects"], columns=["id"]) for s in ours["outputs"]])["id"]
    our_scores = removal_scores(planted, set(our_removed), docs)
    speedup = round(their_seconds / our_seconds, 2)
    log(
        f"peer, {docs:,} docs on {PEER_CORES} cores: DataTrove {their_seconds:.1f} s, {theirs['removed']:,} removed, "
        f"recall@0.8 {their_scores['recall_j08']}; curate {our_seconds:.1f} s, {ours['rejected']:,} removed, "
        f"recall@0.8 {our_scores['recall_j08']}; {speedup}x"
    )
    figures = {
        "peer_docs": docs,
        "datatrove_seconds": round(their_seconds, 2),
        "datatrove_recall_j08": their_scores["recall_j08"],
        "datatrove_false_removal_rate": their_scores["false_removal_rate"],
        "datatrove_removed": theirs["removed"],
        "datatrove_peak_rss_mb": round(their_rss, 1),
        "peer_curate_seconds": round(our_seconds, 2),
        "peer_curate_recall_j08": our_scores["recall_j08"],
        "peer_curate_false_removal_rate": our_scores["false_removal_rate"],
        "peer_curate_removed": ours["rejected"],
        "peer_curate_peak_rss_mb": round(our_rss, 1),
        "speedup_vs_datatrove": speedup,
        "peer_settings": {
            "datatrove": f"datatrove {theirs['version']}: ParquetReader, MinhashDedupSignature, MinhashDedupBuckets, "
            "MinhashDedupCluster, MinhashDedupFilter (MinhashConfig() defaults: 5-grams, 14 buckets x 8 hashes), "
            f"kept and removed to ParquetWriter; LocalPipelineExecutor, {PEER_TASKS} workers, {PEER_TASKS} tasks "
            "(buckets 14, clustering 1)",
            "curate": f"near_duplicates_out_of_core, defaults, {PARTITIONS} partitions",
            "input": f"{PEER_TASKS} Parquet files of consecutive records, the same for both",
            "cores": f"each side a fresh child pinned to {PEER_CORES} cores (taskset); wall time with imports",
            "rss": "peak of the child's process tree, its processes' RSS summed (sampled every 0.2 s, /proc)",
            "recall": "from the removed ids: a planted copy with J >= 0.8 is found when it or its source was removed",
        },
    }
    checks = {
        "peer_records_add_up": theirs["kept"] + theirs["removed"] == docs and ours["kept"] + ours["rejected"] == docs
    }
    return figures, checks


def peer_targets(figures: dict) -> dict:
    margin = None
    if figures["peer_curate_recall_j08"] is not None and figures["datatrove_recall_j08"] is not None:
        margin = round(figures["peer_curate_recall_j08"] - figures["datatrove_recall_j08"], 4)
    figures["peer_recall_margin_j08"] = margin
    return {
        "speedup_vs_datatrove": target(figures["speedup_vs_datatrove"], ">=", 10),
        "peer_recall_margin_j08": target(margin, ">=", 0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3,000 and 300 documents (seconds)")
    parser.add_argument("--docs", type=int, default=1_000_000, help="documents at the largest size (1000000)")
    parser.add_argument("--work", help="folder for the corpora and work folders (default: a temporary one)")
    parser.add_argument(
        "--peer-docs", type=int, default=300_000, help="documents in the DataTrove peer run (300000; 0: none)"
    )
    parser.add_argument("--peer", action="store_true", help="only the DataTrove peer run")
    parser.add_argument("--child", choices=["generate", "split", "dedup", "datatrove", "memory"])
    parser.add_argument("--tasks", type=int, default=PEER_TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--inputs", default="shards", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "generate":
        return generate_child(args.docs, args.paths[0])
    if args.child == "split":
        return split_child(args.paths[0], args.tasks)
    if args.child == "dedup":
        return dedup_child(args.paths[0], args.inputs)
    if args.child == "datatrove":
        return datatrove_child(args.paths[0], args.tasks)
    if args.child == "memory":
        return memory_child(args.paths[0])
    docs = 3000 if args.quick else args.docs
    peer_docs = 2000 if args.quick else args.peer_docs
    if args.peer:
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            peer, peer_checks = peer_run(peer_docs, Path(tmp) / "peer")
        figures = {"benchmark": "near dedup against DataTrove", "quick": args.quick, "machine": machine(), **peer}
        return finish(figures, peer_targets(figures), peer_checks)
    peer: dict = {}
    peer_checks: dict = {}
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        small, small_checks = one_size(docs // 10, Path(tmp) / "small", compare=True)
        large, large_checks = one_size(docs, Path(tmp) / "large", compare=False)
        if peer_docs:
            peer, peer_checks = peer_run(peer_docs, Path(tmp) / "peer")
    growth = round(large["seconds"] / small["seconds"], 2)
    figures = {
        "benchmark": "out-of-core near dedup at scale",
        "quick": args.quick,
        "machine": machine(),
        "scale_docs": large["docs"],
        "scale_seconds": large["seconds"],
        "scale_peak_rss_mb": large["peak_rss_mb"],
        "scale_recall_j08": large["recall_j08"],
        "scale_false_merge_rate": large["false_merge_rate"],
        "scale_small_docs": small["docs"],
        "scale_small_seconds": small["seconds"],
        "scale_small_peak_rss_mb": small["peak_rss_mb"],
        "scale_small_recall_j08": small["recall_j08"],
        "scale_small_false_merge_rate": small["false_merge_rate"],
        "scale_time_growth": growth,
        **peer,
        "scale_runs": {"small": small, "large": large},
        "scale_settings": {
            "corpus": "8-14 real sentences per document from Alpaca, LIMA and the social posts; 10 % planted copies",
            "stage": f"near_duplicates_out_of_core, defaults, {SHARD_ROWS:,}-record shards, {PARTITIONS} partitions",
            "rss": "peak RSS of the stage's child process tree (os.wait4)",
        },
    }
    targets = {
        "scale_peak_rss_mb": target(large["peak_rss_mb"], "<", 3000),
        "scale_recall_j08": target(large["recall_j08"], ">=", 0.99),
        "scale_false_merge_rate": target(large["false_merge_rate"], "<=", 0.001),
        "scale_small_recall_j08": target(small["recall_j08"], ">=", 0.99),
        "scale_small_false_merge_rate": target(small["false_merge_rate"], "<=", 0.001),
        "scale_time_growth": target(growth, "<=", 12),
        **(peer_targets(figures) if peer else {}),
    }
    checks = {**small_checks, **{f"large_{k}": v for k, v in large_checks.items()}, **peer_checks}
    finish(figures, targets, checks)


if __name__ == "__main__":
    main()
