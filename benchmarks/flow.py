"""Benchmark: the curate-alpaca flow, cold and warm, and Prefect's overhead on the same work.

* ``cold_seconds``: the flow into a fresh run directory (a process, start-up and Prefect's
  temporary server included: ``flows.temporary_server`` starts it first thing, so it boots while
  the flow imports its libraries), with the wall time of every stage (``stages``).
* ``warm_seconds``: the same command again (the run is up to date: nothing recomputed).
* ``prefect_overhead``: the cold flow's wall time over the same work as plain library calls in
  one Python process (ingest, exact and near dedup, the recipe's filters, the quality probe, the
  side selections and the main selection, export, the card with its figures), minus one.
  ``prefect_overhead_with_server`` is the same for a cold run against an already running Prefect
  server (how deployments run). Check ``same_outputs_as_plain``: the flow and the plain calls
  wrote the same data shards (sha256), and the served run too.
* The cold flow and the plain calls alternate for ``--rounds`` rounds (default 2) and the medians count;
  each side's CPU seconds (its whole process tree) are reported beside its wall time
  (``prefect_overhead_cpu``), since on a shared 2-core machine wall time moves with the load.
* Every cold run (flow, plain, served) gets its own fresh, empty embedding cache
  (``CURATE_EMBED_CACHE``) and dataset cache: none reuses the user's vectors or another run's.

The PREFECT_HOME is a fresh folder whose database is created once before timing;
``first_use_seconds`` is what that one-time creation took (with the numba kernels' first compile).

``--quick``: the first 500 Alpaca records with the default recipe's filters only (no quality
probe or selections, whose CPU embedding alone takes minutes); both sides do that same work.
The last line printed is one JSON object (``targets.finish``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import child_env, log, machine  # noqa: E402
from benchmarks.targets import finish, target  # noqa: E402

DEFAULT_RECIPE = ROOT / "curate" / "recipes" / "curate-alpaca.yaml"


def plain(out: str, source: str, recipe_path: str) -> None:
    """The flow's work as plain library calls (the baseline); prints its stage times."""
    from curate.dedup.exact import exact_duplicates
    from curate.dedup.near import near_duplicates
    from curate.embed.encoder import Embedder, EmbedSettings
    from curate.io.ingest import IngestOptions
    from curate.recipes.recipe import load_recipe
    from curate.run.pipeline import RunWriter
    from curate.selection.strategies import select
    from curate.stages.filter import run_filter
    from curate.stages.registry import get
    from dataset_cards.card import write_card
    from flows.report import StageClock

    recipe = load_recipe(recipe_path)
    clock = StageClock()
    writer = RunWriter(out, "plain", {"bench": True})
    with clock("ingest"):
        records = writer.open_input([source], IngestOptions(), progress=False)
    with clock("exact_dedup"):
        records = writer.add(exact_duplicates(records))
    with clock("near_dup"):
        records = writer.add(near_duplicates(records))
    for step in recipe.filters:
        with clock(step.name or step.use):
            records = writer.add(run_filter(records, get("filter", step.use)(**step.params), step.name or step.use))
    if recipe.score is not None:
        from curate.selection.strategies import selection_vectors
        from scorers.probe import load_probes, probe_stage

        embedder = Embedder(EmbedSettings(model=recipe.score.embedder))
        with clock("quality"):
            probes = load_probes(recipe.score.probe_paths())
            records = writer.add(probe_stage(records, probes, recipe.score.combine, embedder, progress=False))

        def inputs(spec):
            scores = writer.annotation_column(spec.by) if spec.by and spec.by != "response_words" else None
            return scores, selection_vectors(records, spec.params(), scores, recipe.score.embedder)

        with clock("select"):
            for side in recipe.selections:
                branch = writer.branch(writer.run.root / "selections" / side.name, side.name, {"select": 1})
                scores, vectors = inputs(side)
                branch.finish(branch.add(select(records, side.params(), scores=scores, vectors=vectors)))
                write_card(branch.run.root)
            scores, vectors = inputs(recipe.select)
            records = writer.add(select(records, recipe.select.params(), scores=scores, vectors=vectors))
        writer.manifest["selections"] = {side.name: f"selections/{side.name}" for side in recipe.selections}
    with clock("export"):
        writer.finish(records)
    with clock("card"):
        write_card(out)
    print("stage seconds: " + json.dumps(clock.seconds))


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# One-time costs paid before any timed run, so neither side pays them: Prefect's database, and the
# numba kernels' compile into their on-disk cache (about 13 s in a fresh checkout).
FIRST_USE = """
import flows, polars as pl
from prefect import get_client
get_client()
from curate.dedup.minhash import ShingleParams, permutations, shingle, signatures
signatures(shingle(pl.Series(["one two three four five six"]), ShingleParams()), *permutations(128, 1))
"""


def timed(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, float], float]:
    """Wall time of a command, the stage seconds it printed, and its CPU seconds (its whole process
    tree, workers included), which unlike wall time barely move with the load."""
    import subprocess

    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    cpu = round(_children_cpu() - cpu, 1)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("stage seconds: ")]
    return seconds, json.loads(lines[-1].removeprefix("stage seconds: ")) if lines else {}, cpu


def fresh_caches(env: dict[str, str], root: str, name: str) -> dict[str, str]:
    """``env`` with an empty embedding cache of its own (and the datasets cache beside it)."""
    Path(f"{root}/{name}-embeddings").mkdir(parents=True)
    return {**env, "CURATE_EMBED_CACHE": f"{root}/{name}-embeddings"}


def served_run(env: dict[str, str], flow: list[str]) -> tuple[float, dict[str, float], float]:
    """The cold flow against an already running server (as deployments and `curate serve` run)."""
    import subprocess

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
        return timed(flow, {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    finally:
        server.terminate()
        server.wait(timeout=60)


def shards(run: str) -> list[str]:
    return [f["sha256"] for f in json.loads(Path(f"{run}/manifest.json").read_text())["outputs"]["data"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 records, filters only (the CI check)")
    parser.add_argument("--rounds", type=int, help="alternating cold flow / plain rounds, medians (default 2; 1 quick)")
    parser.add_argument("--plain", nargs=3, metavar=("OUT", "SOURCE", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        return plain(*args.plain)
    args.rounds = args.rounds or (1 if args.quick else 2)
    env = child_env(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    with tempfile.TemporaryDirectory() as tmp:
        env["PREFECT_HOME"] = f"{tmp}/prefect"
        source, recipe = "alpaca", str(DEFAULT_RECIPE)
        if args.quick:
            from curate.io import catalog

            rows = json.loads(Path(catalog.resolve(catalog.lookup("alpaca"))).read_text())[:500]
            source, recipe = f"{tmp}/alpaca_head.json", f"{tmp}/filters.yaml"
            Path(source).write_text(json.dumps(rows))
            import yaml

            default = yaml.safe_load(DEFAULT_RECIPE.read_text())
            Path(recipe).write_text(yaml.safe_dump({"name": "bench-quick", "filters": default["filters"]}))
        first_use, _, _ = timed([sys.executable, "-c", FIRST_USE], env)

        def flow_command(out: str) -> list[str]:
            return [sys.executable, "-m", "flows.curate_alpaca", source, "--out", out, "--recipe", recipe]

        colds, plains = [], []
        for round_ in range(args.rounds):
            # Alternating, each round into fresh folders and caches; the medians are reported.
            colds.append(timed(flow_command(f"{tmp}/flow{round_}"), fresh_caches(env, tmp, f"flow{round_}")))
            log(f"cold flow, round {round_ + 1}: {colds[-1][0]:.1f} s ({colds[-1][2]} CPU s) {colds[-1][1]}")
            plain_command = [sys.executable, __file__, "--plain", f"{tmp}/plain{round_}", source, recipe]
            plains.append(timed(plain_command, fresh_caches(env, tmp, f"plain{round_}")))
            log(f"plain calls, round {round_ + 1}: {plains[-1][0]:.1f} s ({plains[-1][2]} CPU s) {plains[-1][1]}")
        # Medians of the rounds' wall seconds; the stage times shown are the lower-middle round's.
        cold, baseline = statistics.median(c[0] for c in colds), statistics.median(p[0] for p in plains)
        stages = sorted(colds, key=lambda run: run[0])[(len(colds) - 1) // 2][1]
        plain_stages = sorted(plains, key=lambda run: run[0])[(len(plains) - 1) // 2][1]
        cold_cpu, plain_cpu = [c[2] for c in colds], [p[2] for p in plains]
        warm, _, _ = timed(flow_command(f"{tmp}/flow0"), fresh_caches(env, tmp, "warm"))
        log(f"warm flow (up to date): {warm:.1f} s")
        served, served_stages, _ = served_run(fresh_caches(env, tmp, "served"), flow_command(f"{tmp}/served"))
        log(f"cold flow against a running server: {served:.1f} s {served_stages}")
        manifest = json.loads(Path(f"{tmp}/flow0/manifest.json").read_text())
        runs = [f"{tmp}/{side}{r}" for r in range(args.rounds) for side in ("flow", "plain")] + [f"{tmp}/served"]
        same = all(shards(run) == shards(runs[0]) for run in runs)
    figures = {
        "benchmark": "curate-alpaca flow",
        "quick": args.quick,
        "machine": machine(),
        "settings": {
            "work": "500 Alpaca records; ingest, exact and near dedup, the default recipe's filters, export, card"
            if args.quick
            else "Alpaca 52k; ingest, dedup, filters, quality probe, lima-1k and alpagasus-9k selections, export, card",
            "flow": "python -m flows.curate_alpaca in a fresh process, Prefect's temporary server started first",
            "plain": "the same library calls in one fresh process, no Prefect",
            "caches": "each cold run its own empty CURATE_EMBED_CACHE",
            "threads": f"all {machine()['cpus']} cores on both sides",
            "rounds": f"{args.rounds} alternating (cold flow, plain), medians of wall seconds",
        },
        "cold_seconds_rounds": [round(c[0], 1) for c in colds],
        "plain_seconds_rounds": [round(p[0], 1) for p in plains],
        "cold_cpu_seconds_rounds": cold_cpu,
        "plain_cpu_seconds_rounds": plain_cpu,
        "prefect_overhead_cpu": round(statistics.median(cold_cpu) / max(statistics.median(plain_cpu), 1e-9) - 1, 3),
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
        "funnel": [{k: s[k] for k in ("name", "in", "kept", "rejected")} for s in manifest["stages"]],
    }
    targets = {
        "cold_seconds": target(figures["cold_seconds"], "<", 600),
        "warm_seconds": target(figures["warm_seconds"], "<", 30),
        "prefect_overhead": target(figures["prefect_overhead"], "<", 0.10),
    }
    finish(figures, targets, {"same_outputs_as_plain": same})


if __name__ == "__main__":
    main()
