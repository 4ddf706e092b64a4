"""Benchmark: the curate-alpaca flow, cold and warm, and Prefect's overhead.

* ``cold_seconds``: the flow on Alpaca 52k into a fresh run directory (a process, start-up
  and Prefect's temporary server included), with the wall time of every stage from the manifest
  log of the run.
* ``warm_seconds``: the same command again (the run is up to date: nothing recomputed).
* ``prefect_overhead``: the cold flow's wall time over the same library calls in one plain
  Python process on the same data, minus one.

The last line printed is one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plain(out: str) -> None:
    """The flow's stages as plain library calls (the baseline)."""
    from curate.dedup.exact import exact_duplicates
    from curate.dedup.near import near_duplicates
    from curate.filtering import run_filter
    from curate.ingest import IngestOptions
    from curate.pipeline import RunWriter
    from curate.recipe import load_recipe
    from curate.registry import get
    from dataset_cards.card import write_card
    from flows.curate_alpaca import DEFAULT_RECIPE

    writer = RunWriter(out, "plain", {"bench": True})
    records = writer.open_input(["alpaca"], IngestOptions(), progress=False)
    records = writer.add(exact_duplicates(records))
    records = writer.add(near_duplicates(records))
    for step in load_recipe(DEFAULT_RECIPE).filters:
        records = writer.add(run_filter(records, get("filter", step.use)(**step.params), step.name or step.use))
    writer.finish(records)
    write_card(out)


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--plain":
        return plain(sys.argv[2])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        env["PREFECT_HOME"] = f"{tmp}/prefect"
        flow = [sys.executable, "-m", "flows.curate_alpaca", "alpaca", "--out", f"{tmp}/flow"]
        cold = timed(flow, env)
        print(f"cold flow: {cold:.1f} s", file=sys.stderr)
        warm = timed(flow, env)
        print(f"warm flow (up to date): {warm:.1f} s", file=sys.stderr)
        baseline = timed([sys.executable, __file__, "--plain", f"{tmp}/plain"], env)
        print(f"plain library calls: {baseline:.1f} s", file=sys.stderr)
        manifest = json.loads(Path(f"{tmp}/flow/manifest.json").read_text())
        same = (
            manifest["outputs"]["data"] == json.loads(Path(f"{tmp}/plain/manifest.json").read_text())["outputs"]["data"]
        )
    print(
        json.dumps(
            {
                "benchmark": "curate-alpaca flow",
                "cold_seconds": round(cold, 1),
                "warm_seconds": round(warm, 1),
                "plain_seconds": round(baseline, 1),
                "prefect_overhead": round(cold / baseline - 1, 3),
                "same_shards_as_plain": same,
                "funnel": [{k: s[k] for k in ("name", "in", "kept", "rejected")} for s in manifest["stages"]],
                "targets": {"cold_seconds": "< 600", "warm_seconds": "< 30", "prefect_overhead": "< 0.10"},
            }
        )
    )


if __name__ == "__main__":
    main()
