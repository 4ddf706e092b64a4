"""Quality probe benchmark: how well the judge-distilled probe predicts the judge, and what scoring costs.

* Probe quality: 5-fold cross-validated ROC AUC and precision in the top 10 % on the shared AlpaGasus
  Claude labels (10,400 Alpaca rows, 1,055 positive), beside the baselines: response length alone,
  a random score, and the same probe on length features only.
* Scoring cost: records per second for the probe on this CPU, embeddings cold (no cache) and warm
  (from the cache), against the LLM judge's measured seconds per record on the local
  OpenAI-compatible server (``benchmarks/judge.py``, when present).

Usage: ``python benchmarks/quality.py [--score-records 1000] [--skip-judge]``; the last line is one
JSON object with ``cv_auc``, ``precision_top10pct``, ``base_rate``, ``length_only_auc``,
``probe_records_per_s``, ``judge_seconds_per_record``.
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
os.environ.setdefault("CURATE_DATA_DIR", str(ROOT.parent / "shared" / "data"))


def _auc_p10(y, p):
    import numpy as np
    from sklearn.metrics import roc_auc_score

    top = np.argsort(-p, kind="stable")[: len(y) // 10]
    return round(float(roc_auc_score(y, p)), 4), round(float(y[top].mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score-records", type=int, default=1000, help="records to score for the cost figures")
    parser.add_argument("--skip-judge", action="store_true", help="do not measure the LLM judge")
    args = parser.parse_args()

    import numpy as np
    import polars as pl

    from curate.embed.encoder import Embedder, EmbeddingCache
    from curate.io.ingest import Ingest, IngestOptions
    from scorers.probe import DEFAULT_PROBE, QualityProbe, features, labelled_records, pair_vectors, train

    labels = Path(os.environ["CURATE_DATA_DIR"]) / "alpagasus" / "claude_judge_sample.jsonl"
    records = pl.concat([batch[0] for batch in Ingest(["alpaca"], IngestOptions()).batches()])
    labelled, y = labelled_records(records, labels)
    embedder = Embedder()
    cache = EmbeddingCache(EmbeddingCache.default_root(), embedder.key(), embedder.dimension)
    print(f"embedding {labelled.height:,} labelled records (prompt and response; cached after the first run)")
    prompt, response = pair_vectors(labelled, embedder, cache, progress=True)
    shipped = QualityProbe.load(DEFAULT_PROBE)
    probe = train(labelled, prompt, response, y, embedder.settings.model_name(), "", c=shipped.metrics["C"])
    m = probe.metrics
    rng = np.random.default_rng(0)
    random_auc, random_p10 = _auc_p10(y, rng.random(len(y)))
    x = features(labelled, prompt, response)
    length_auc, length_p10 = _auc_p10(y, -x[:, -1])
    figures = {
        "labels": m["labels"],
        "positives": m["positives"],
        "base_rate": m["base_rate"],
        "embedders": {
            embedder.settings.model_name(): {"cv_auc": m["cv_auc"], "precision_top10pct": m["precision_top10pct"]}
        },
        "baselines": {
            "response_length": {"auc": length_auc, "precision_top10pct": length_p10},
            "random": {"auc": random_auc, "precision_top10pct": random_p10},
        },
        "cv_auc": m["cv_auc"],
        "precision_top10pct": m["precision_top10pct"],
        "precision_over_base_rate": round(m["precision_top10pct"] / m["base_rate"], 2),
        "length_only_auc": m["length_only_auc"],
        "shipped_probe_reproduced": probe.weights.tobytes() == shipped.weights.astype("<f4").tobytes(),
    }

    sample = records.filter(~pl.col("id").is_in(labelled["id"].implode())).head(args.score_records)
    with tempfile.TemporaryDirectory() as cold_root:
        cold_cache = EmbeddingCache(cold_root, embedder.key(), embedder.dimension)
        started = time.perf_counter()
        pv, rv = pair_vectors(sample, embedder, cold_cache)
        shipped.predict(features(sample, pv, rv))
        cold = time.perf_counter() - started
        started = time.perf_counter()
        pv, rv = pair_vectors(sample, embedder, cold_cache)
        shipped.predict(features(sample, pv, rv))
        warm = time.perf_counter() - started
    figures["probe_records_per_s"] = round(sample.height / cold, 1)
    figures["probe_records_per_s_cached"] = round(sample.height / warm, 1)
    figures["probe_device"] = embedder.device

    judge = None
    bench = ROOT / "benchmarks" / "judge.py"
    if not args.skip_judge and bench.exists():
        done = subprocess.run([sys.executable, str(bench)], capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode == 0 and lines:
            judge = json.loads(lines[-1]).get("judge_seconds_per_record")
        else:
            print(f"judge benchmark failed: {done.stderr[-500:]}", file=sys.stderr)
    figures["judge_seconds_per_record"] = judge
    if judge:
        figures["probe_speedup_vs_judge"] = round(judge * figures["probe_records_per_s"], 1)
    figures["targets"] = {"cv_auc": 0.75, "precision_top10pct": round(2 * m["base_rate"], 4)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
