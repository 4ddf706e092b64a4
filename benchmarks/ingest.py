"""Benchmark: ingest + exact dedup + export of Alpaca 52k against a plain-Python baseline.

The baseline does the same work the obvious way: ``json.load``, the same content ids and
derived text, the same NFKC/lowercase/whitespace key in a Python ``set``, and
``pyarrow.parquet.write_table`` of the kept rows and the rejects. Each side runs in its own
fresh process (so peak RSS is its own) with every module imported before its clock starts,
alternating, five rounds; medians are reported. Both run on all cores (the baseline is one
thread by nature; ``cores`` says how many there were). Check ``same_output``: the two kept
the same records (ids, instruction, input, output, text, in order) and rejected the same ids.
The last line printed is one JSON object (``targets.finish``) with records_per_s,
baseline_records_per_s, speedup and peak_rss_mb (curate's). ``--quick``: the first 5,000
records, one round.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import resource
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import alternate, machine, median, run_json  # noqa: E402
from benchmarks.targets import finish, target  # noqa: E402

ROUNDS = 5
COMPARED = ["id", "instruction", "input", "output", "text"]


def ours(source: str, out: Path) -> int:
    from curate.dedup.exact import exact_duplicates
    from curate.io.ingest import IngestOptions
    from curate.run.pipeline import RunWriter

    writer = RunWriter(out, "dedup", {"bench": True})
    records = writer.open_input([source], IngestOptions(format="alpaca"), progress=False)
    kept = writer.add(exact_duplicates(records))
    manifest = writer.finish(kept)
    return manifest["records"]["kept"]


def baseline(path: str, out: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

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


def child(which: str, source: str, out: str) -> None:
    # Every module either side uses is imported before the clock starts.
    import pyarrow as pa  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import curate.dedup.exact
    import curate.io.ingest
    import curate.run.pipeline  # noqa: F401
    from curate.io import catalog

    path = source if Path(source).exists() else str(catalog.resolve(catalog.lookup(source)))
    start = time.perf_counter()
    kept = ours(source, Path(out)) if which == "ours" else baseline(path, Path(out))
    seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "kept": kept}))


def outputs(which: str, out: Path) -> tuple[list[tuple], list[str]]:
    """(kept rows as tuples of COMPARED, in order; rejected ids, sorted) of one side's output."""
    import polars as pl

    if which == "ours":
        kept = pl.read_parquet(sorted((out / "data").glob("*.parquet")))
        rejects = pl.read_parquet(out / "rejects" / "exact_dedup.parquet")
    else:
        kept, rejects = pl.read_parquet(out / "train.parquet"), pl.read_parquet(out / "rejects.parquet")
    return kept.select(COMPARED).rows(), sorted(rejects["id"].to_list()) if "id" in rejects.columns else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["ours", "baseline"])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--quick", action="store_true", help="the first 5,000 records, one round (the CI check)")
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, *args.paths)
    rounds = 1 if args.quick else args.rounds
    with tempfile.TemporaryDirectory() as tmp:
        source = "alpaca"
        if args.quick:
            from curate.io import catalog

            rows = json.loads(Path(catalog.resolve(catalog.lookup("alpaca"))).read_text())[:5000]
            source = f"{tmp}/alpaca_head.json"
            Path(source).write_text(json.dumps(rows))
        count = iter(range(10**6))

        def side(which: str):
            return lambda: {
                **run_json([sys.executable, __file__, "--child", which, source, out := f"{tmp}/{which}{next(count)}"]),
                "out": out,
            }

        runs = alternate({"ours": side("ours"), "baseline": side("baseline")}, rounds)
        ours_out = outputs("ours", Path(runs["ours"][0]["out"]))
        same = all(outputs(w, Path(r["out"])) == ours_out for w in runs for r in runs[w])
    ours_runs, base_runs = runs["ours"], runs["baseline"]
    records = len(ours_out[0]) + len(ours_out[1])
    t_ours, t_base = median(ours_runs), median(base_runs)
    figures = {
        "benchmark": f"ingest+exact_dedup+export alpaca {'5k' if args.quick else '52k'}",
        "quick": args.quick,
        "machine": machine(),
        "settings": {
            "work": "read the Alpaca JSON, content ids, derived text, exact dedup on the NFKC/lowercase/whitespace "
            "key, kept rows and rejects to zstd Parquet",
            "curate": "RunWriter + exact_duplicates in a fresh process, imports before the clock",
            "baseline": "json.load, a Python dict of keys, pyarrow write_table, in a fresh process, imports "
            "before the clock",
            "threads": f"both unpinned on {machine()['cpus']} cores (the baseline is single-threaded)",
            "rounds": rounds,
            "order": "alternating, median",
        },
        "records": records,
        "kept": ours_runs[0]["kept"],
        "seconds": round(t_ours, 3),
        "baseline_seconds": round(t_base, 3),
        "records_per_s": round(records / t_ours),
        "baseline_records_per_s": round(records / t_base),
        "speedup": round(t_base / t_ours, 2),
        "peak_rss_mb": round(max(r["rss_mb"] for r in ours_runs), 1),
        "baseline_peak_rss_mb": round(max(r["rss_mb"] for r in base_runs), 1),
    }
    targets = {
        "speedup": target(figures["speedup"], ">=", 3),
        "peak_rss_mb": target(figures["peak_rss_mb"], "<", 1024),
    }
    finish(figures, targets, {"same_output": same, "kept_counts_agree": ours_runs[0]["kept"] == base_runs[0]["kept"]})


if __name__ == "__main__":
    main()
