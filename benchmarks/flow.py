"""Benchmark: the curate-alpaca flow, cold and warm, and Prefect's overhead.

* ``cold_seconds``: the flow on Alpaca 52k into a fresh run directory (a process, start-up
  and Prefect's temporary server included), with the wall time of every stage (``stages``, as
  the flow measured them and shows them in its funnel artifact).
* ``warm_seconds``: the same command again (the run is up to date: nothing recomputed).
* ``prefect_overhead``: the cold flow's wall time over the same library calls in one plain
  Python process on the same data, minus one. ``prefect_overhead_with_server`` is the same for
  a cold run against an already running Prefect server (how deployments run), which saves the
  temporary server's start. ``plain_stages`` are the baseline's stage times;
  ``startup_seconds`` is the flow's wall time outside its stages (interpreter, imports,
  Prefect's temporary API server, flow-run bookkeeping).

The PREFECT_HOME is a fresh folder whose database is created once before timing (a user's
project home is created on first use, not on every run); ``first_use_seconds`` is what that
one-time creation took.

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
    """The flow's stages as plain library calls (the baseline); prints its stage times."""
    from curate.dedup.exact import exact_duplicates
    from curate.dedup.near import near_duplicates
    from curate.io.ingest import IngestOptions
    from curate.recipes.recipe import load_recipe
    from curate.run.pipeline import RunWriter
    from curate.stages.filter import run_filter
    from curate.stages.registry import get
    from dataset_cards.card import write_card
    from flows.curate_alpaca import DEFAULT_RECIPE
    from flows.report import StageClock

    clock = StageClock()
    writer = RunWriter(out, "plain", {"bench": True})
    with clock("ingest"):
        records = writer.open_input(["alpaca"], IngestOptions(), progress=False)
    with clock("exact_dedup"):
        records = writer.add(exact_duplicates(records))
    with clock("near_dup"):
        records = writer.add(near_duplicates(records))
    for step in load_recipe(DEFAULT_RECIPE).filters:
        with clock(step.name or step.use):
            records = writer.add(run_filter(records, get("filter", step.use)(**step.params), step.name or step.use))
    with clock("export"):
        writer.finish(records)
    with clock("card"):
        write_card(out)
    print("stage seconds: " + json.dumps(clock.seconds))


def timed(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Wall time of a command and the stage seconds it printed."""
    start = time.perf_counter()
    done = subprocess.run(command, check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("stage seconds: ")]
    return seconds, json.loads(lines[-1].removeprefix("stage seconds: ")) if lines else {}


def served_run(env: dict[str, str], out: str) -> tuple[float, dict[str, float]]:
    """The cold flow against an already running server (as deployments and `curate serve` run)."""
    from flows.demo import free_port
    from flows.serve import wait_healthy

    port = free_port(4290)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(port, timeout=300)
        flow = [sys.executable, "-m", "flows.curate_alpaca", "alpaca", "--out", out]
        return timed(flow, {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--plain":
        return plain(sys.argv[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    with tempfile.TemporaryDirectory() as tmp:
        env["PREFECT_HOME"] = f"{tmp}/prefect"
        first_use, _ = timed([sys.executable, "-c", "import flows; from prefect import get_client; get_client()"], env)
        flow = [sys.executable, "-m", "flows.curate_alpaca", "alpaca", "--out", f"{tmp}/flow"]
        cold, stages = timed(flow, env)
        print(f"cold flow: {cold:.1f} s {stages}", file=sys.stderr)
        warm, _ = timed(flow, env)
        print(f"warm flow (up to date): {warm:.1f} s", file=sys.stderr)
        baseline, plain_stages = timed([sys.executable, __file__, "--plain", f"{tmp}/plain"], env)
        print(f"plain library calls: {baseline:.1f} s {plain_stages}", file=sys.stderr)
        served, served_stages = served_run(env, f"{tmp}/served")
        print(f"cold flow against a running server: {served:.1f} s {served_stages}", file=sys.stderr)
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
                "served_seconds": round(served, 1),
                "prefect_overhead_with_server": round(served / baseline - 1, 3),
                "stages": stages,
                "plain_stages": plain_stages,
                "startup_seconds": round(cold - sum(stages.values()), 1),
                "plain_startup_seconds": round(baseline - sum(plain_stages.values()), 1),
                "first_use_seconds": round(first_use, 1),
                "same_shards_as_plain": same,
                "funnel": [{k: s[k] for k in ("name", "in", "kept", "rejected")} for s in manifest["stages"]],
                "targets": {"cold_seconds": "< 600", "warm_seconds": "< 30", "prefect_overhead": "< 0.10"},
            }
        )
    )


if __name__ == "__main__":
    main()
