"""Benchmark: ingest + exact dedup + export of Alpaca 52k against a plain-Python baseline.

The baseline does the same work the obvious way: ``json.load``, the same content ids and
derived text, the same NFKC/lowercase/whitespace key in a Python ``set``, and
``pyarrow.parquet.write_table`` of the kept rows and the rejects. Each side runs in its own
fresh process (so peak RSS is its own), alternating, five rounds; medians are reported.
The last line printed is one JSON object with records_per_s, baseline_records_per_s,
speedup and peak_rss_mb (curate's).
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
from pathlib import Path

ROUNDS = 5


def ours(out: Path) -> int:
    from curate.dedup.exact import exact_duplicates
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter

    writer = RunWriter(out, "dedup", {"bench": True})
    records = writer.open_input(["alpaca"], IngestOptions(), progress=False)
    kept = writer.add(exact_duplicates(records))
    manifest = writer.finish(kept)
    assert manifest["records"]["in"] == 52002
    return manifest["records"]["kept"]


def baseline(out: Path) -> int:
    import hashlib
    import re
    import unicodedata

    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.io import catalog

    path = catalog.resolve(catalog.lookup("alpaca"))
    with open(path) as handle:
        rows = json.load(handle)
    ws = re.compile(r"\s+")

    def canon(s: str) -> str:
        return unicodedata.normalize("NFC", s.replace("\r\n", "\n")).strip(" \t\n\r\x0b\x0c")

    def key(s: str) -> str:
        return ws.sub(" ", unicodedata.normalize("NFKC", s).lower()).strip()

    seen: dict[tuple[str, str, str], str] = {}
    kept, rejects = [], []
    for i, row in enumerate(rows):
        ins, inp, outp = row["instruction"], row.get("input", ""), row["output"]
        body = "\x1f".join(("instruction", canon(ins), canon(inp), canon(outp)))
        rid = hashlib.sha256(body.encode()).hexdigest()[:16]
        text = "\n\n".join(p for p in (ins, inp, outp) if p)
        record = {
            "id": rid,
            "source": "alpaca",
            "source_id": str(i),
            "kind": "instruction",
            "instruction": ins,
            "input": inp,
            "output": outp,
            "text": text,
            "license": "cc-by-nc-4.0",
            "meta": None,
        }
        k = (key(ins), key(inp), key(outp))
        if k in seen:
            rejects.append({**record, "stage": "exact_dedup", "reason": "exact_duplicate", "duplicate_of": seen[k]})
        else:
            seen[k] = rid
            kept.append(record)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept), out / "train.parquet", compression="zstd")
    pq.write_table(
        pa.Table.from_pylist(rejects) if rejects else pa.table({"id": pa.array([], pa.string())}),
        out / "rejects.parquet",
        compression="zstd",
    )
    return len(kept)


def child(which: str) -> None:
    # Imports happen before the clock starts, for both sides.
    import pyarrow.parquet  # noqa: F401

    if which == "ours":
        import curate.dedup.exact
        import curate.run.pipeline  # noqa: F401
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        kept = (ours if which == "ours" else baseline)(Path(tmp) / "run")
        seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "kept": kept}))


def run_child(which: str) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", which], capture_output=True, text=True, check=True, env=os.environ
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["ours", "baseline"])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    records = 52002
    ours_runs, base_runs = [], []
    for _ in range(args.rounds):
        ours_runs.append(run_child("ours"))
        base_runs.append(run_child("baseline"))
    t_ours = statistics.median(r["seconds"] for r in ours_runs)
    t_base = statistics.median(r["seconds"] for r in base_runs)
    assert ours_runs[0]["kept"] == base_runs[0]["kept"], (ours_runs[0]["kept"], base_runs[0]["kept"])
    result = {
        "benchmark": "ingest+exact_dedup+export alpaca 52k",
        "records": records,
        "kept": ours_runs[0]["kept"],
        "seconds": round(t_ours, 3),
        "baseline_seconds": round(t_base, 3),
        "records_per_s": round(records / t_ours),
        "baseline_records_per_s": round(records / t_base),
        "speedup": round(t_base / t_ours, 2),
        "peak_rss_mb": round(max(r["rss_mb"] for r in ours_runs), 1),
        "baseline_peak_rss_mb": round(max(r["rss_mb"] for r in base_runs), 1),
        "targets": {"speedup": ">= 3", "peak_rss_mb": "< 1024"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
