"""The ``curate-alpaca`` flow: Alpaca 52k (or any source) -> exact dedup -> near dedup -> filters
-> quality probe -> keep the best ~9k -> export -> dataset card, with the side selections of the
recipe (a LIMA-style 1k) exported beside it as their own run directories under ``RUN/selections/``.
``out`` may be an fsspec URL (``s3://bucket/runs/x``): the run, its selections and its card are
staged locally and uploaded manifest-last (:mod:`curate.io.storage`).

The flow only wires library calls into tasks; all logic lives in :mod:`curate` and :mod:`scorers`.
Tasks hand each other frames in memory (results are never persisted or hashed); filters map over
shards of ``shard_rows`` records on local threads or, with ``dask``, on a Dask cluster (see
:mod:`flows.scale`).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams, add_to_index, near_duplicates
from curate.dedup.out_of_core import use_out_of_core
from curate.io.ingest import IngestOptions
from curate.recipes.recipe import load_recipe
from curate.records.normalize import TextNormalization
from curate.run.directory import RunDir
from curate.run.pipeline import ExportOptions, RunWriter, UpToDate
from flows.report import StageClock, close_run, plain_curate_errors, print_result
from flows.scale import filter_shard, map_shards, sign_shards, task_runner

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "curate" / "recipes" / "curate-alpaca.yaml"


def _network_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what a retry can fix: a failed download, not bad input."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError) or str(exc).startswith("cannot download")


@task(cache_policy=NONE, persist_result=False, retries=2, retry_delay_seconds=10, retry_condition_fn=_network_failure)
def ingest(writer: RunWriter, sources: list[str], options: IngestOptions):
    """Retried on a failed download of a registry source (downloads are verified and atomic)."""
    return writer.open_input(sources, options, progress=False)


@task(cache_policy=NONE, persist_result=False)
def exact_dedup(writer: RunWriter, records, params: ExactDedupParams):
    return writer.add(exact_duplicates(records, params))


@task(cache_policy=NONE, persist_result=False)
def near_dedup(writer: RunWriter, records, params: NearDedupParams, index: str | None, signed=None):
    """LSH clustering over the whole corpus, from signatures signed per shard (``signed``)."""
    from curate.dedup.index import open_index

    opened = open_index(index, params) if index else None
    result = near_duplicates(records, params, index=opened, signed=signed)
    kept = writer.add(result)
    if opened is not None:
        add_to_index(opened, result)
    get_run_logger().info("near_dup: %s", result.stats)
    return kept


def filter_stage(writer: RunWriter, records, use: str, params: dict[str, Any], name: str, runner, shard_rows: int):
    """A filter mapped over shards of the records (one task per shard), booked as one stage."""
    return writer.add(map_shards(runner, filter_shard, records, shard_rows, use=use, params=params, name=name))


@task(cache_policy=NONE, persist_result=False)
def quality(writer: RunWriter, records, spec):
    """The judge probes, the label-free signals and the combined scores (progress with rate and ETA in the log)."""
    from scorers.probe import quality_stage

    result = quality_stage(records, spec, progress=True)
    get_run_logger().info("quality: %s", result.stats)
    return writer.add(result)


@task(cache_policy=NONE, persist_result=False)
def ifd(writer: RunWriter, records, spec):
    from scorers.ifd import IfdParams, ifd_stage

    return writer.add(ifd_stage(records, IfdParams(model=spec.ifd_model)))


def _selection_inputs(writer: RunWriter, records, spec, score_spec, labels: str | None):
    """Scores, vectors (for diversity strategies: of the candidates only) and judge labels for a selection."""
    from curate.selection.strategies import selection_vectors, stored_scores
    from scorers.probe import judge_labels

    scores = stored_scores(spec.by, writer.annotation_column)
    vectors = selection_vectors(records, spec.params(), scores, score_spec.embedder if score_spec else None)
    judged = {}
    for name in (labels or "").split(","):
        if name.strip():
            try:
                judged[name.strip()] = judge_labels(name.strip())
            except Exception as exc:  # the report is optional: a missing label file must not stop the run
                get_run_logger().warning("judge labels %s not used: %s", name, exc)
    return scores, vectors, judged or None


def _log_selection(name: str, result) -> None:
    stats = {k: v for k, v in result.stats.items() if k not in ("report", "warning")}
    get_run_logger().info("%s: %s", name, stats)
    if result.stats.get("warning"):
        get_run_logger().warning("%s: %s", name, result.stats["warning"])


@task(cache_policy=NONE, persist_result=False)
def side_selection(writer: RunWriter, records, spec, score_spec, labels: str | None) -> str:
    from curate.selection.strategies import select
    from dataset_cards.card import write_card

    out = writer.run.root / "selections" / spec.name
    branch = writer.branch(out, f"curate-alpaca/{spec.name}", {"select": spec.model_dump()})
    scores, vectors, judged = _selection_inputs(writer, records, spec, score_spec, labels)
    result = select(records, spec.params(), scores=scores, vectors=vectors, labels=judged)
    _log_selection(spec.name, result)
    branch.manifest["name"] = spec.name
    branch.finish(branch.add(result))
    write_card(out)
    return str(out)


@task(cache_policy=NONE, persist_result=False)
def main_selection(writer: RunWriter, records, spec, score_spec, labels: str | None):
    from curate.selection.strategies import select

    scores, vectors, judged = _selection_inputs(writer, records, spec, score_spec, labels)
    result = select(records, spec.params(), scores=scores, vectors=vectors, labels=judged)
    _log_selection(spec.name, result)
    return writer.add(result)


@task(cache_policy=NONE, persist_result=False)
def near_dedup_out_of_core(writer: RunWriter, records, params: NearDedupParams, shard_rows: int):
    """Near dedup through a work folder in the run's checkpoints (same result, bounded memory;
    a killed run resumes there, and the folder goes when the run commits)."""
    from curate.dedup.out_of_core import frame_shards, near_duplicates_out_of_core

    work = writer.run.root / ".checkpoints" / "near_dup"
    done = near_duplicates_out_of_core(frame_shards(records, shard_rows), work, params, restart=True)
    get_run_logger().info("near_dup (out of core): %s", done.stats)
    return writer.add(done.to_stage_result())


def clean(
    writer: RunWriter,
    sources,
    options,
    exact,
    near,
    near_index,
    steps,
    clock,
    dask,
    shard_rows: int,
    near_out_of_core_above: int | None = None,
):
    """Ingest, exact dedup, near dedup and the recipe's filters, each skipped when a resumed run did it;
    per-shard work on local threads or a Dask cluster. Shared by the curate-alpaca and curate-pretrain flows.
    Near dedup runs out of core above ``near_out_of_core_above`` records (never when None or with an index)."""
    with clock("ingest"):
        records = ingest(writer, sources, options)
    with task_runner(dask) as runner:
        if not writer.skip("exact_dedup"):
            with clock("exact_dedup"):
                records = exact_dedup(writer, records, exact)
        if not writer.skip("near_dup"):
            with clock("near_dup"):
                if use_out_of_core(records.height, near_out_of_core_above, near_index):
                    records = near_dedup_out_of_core(writer, records, near, shard_rows)
                else:
                    signed = sign_shards(runner, records, near, shard_rows)
                    records = near_dedup(writer, records, near, near_index, signed)
        for step in steps:
            name = step.name or step.use
            if not writer.skip(name):
                with clock(name):
                    records = filter_stage(writer, records, step.use, step.params, name, runner, shard_rows)
    return records


@task(cache_policy=NONE, persist_result=False)
def card(run: RunDir) -> str:
    """The run's card; a run staged for a URL is uploaded after it (manifest last), and its card is named by URL."""
    from dataset_cards.card import write_card

    path = write_card(run)
    return f"{run.location}/README.md" if run.remote else str(path)


@task(cache_policy=NONE, persist_result=False)
def export(writer: RunWriter, kept) -> dict[str, Any]:
    return writer.finish(kept)


@flow(name="curate-alpaca", log_prints=True)
def curate_alpaca(
    sources: list[str] | None = None,
    out: str = "runs/curate-alpaca",
    unicode: str = "NFKC",
    casefold: bool = True,
    collapse_whitespace: bool = True,
    near_threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    bands: int | None = None,
    rows: int | None = None,
    keep: str = "first",
    near_index: str | None = None,
    max_shard_rows: int = 100_000,
    strict: bool = False,
    recipe: str | None = None,
    keep_n: int | None = None,
    judge_labels: str | None = "alpagasus-claude-sample,alpagasus-helpfulness-sample",
    dask: str | None = None,
    shard_rows: int = 100_000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Curate an instruction dataset; returns the run's record counts, where it is and stage seconds.

    ``recipe`` (a YAML path) supplies the filters, the quality scorers and the selections; the
    default is curate/recipes/curate-alpaca.yaml. ``keep_n`` overrides the main selection's size;
    ``judge_labels`` (registry names or paths, comma-separated) are judge decisions used only to report
    each judge's positive rate inside the selection against the base rate (None: no report). ``dask`` runs the per-shard
    tasks on a Dask cluster (``tcp://host:8786`` or ``local:N``); neither it nor ``shard_rows``
    changes a byte of the outputs.
    """
    plain_curate_errors()
    chosen_recipe = load_recipe(recipe or DEFAULT_RECIPE)
    steps = chosen_recipe.filters
    score_spec, main_spec = chosen_recipe.score, chosen_recipe.select
    if main_spec is not None and keep_n is not None:
        main_spec = main_spec.model_copy(update={"n": keep_n})
    if sources and sources != ["alpaca"] and judge_labels and "alpagasus-" in judge_labels:
        judge_labels = None  # those labels name rows of alpaca_data.json only
    sources = sources or ["alpaca"]
    options = IngestOptions(strict=strict)
    exact = ExactDedupParams(TextNormalization(unicode, casefold, collapse_whitespace))
    near = NearDedupParams(
        threshold=near_threshold,
        num_perm=num_perm,
        bands=bands,
        rows=rows,
        keep=keep,
        shingles=ShingleParams(ngram=ngram),
    )
    plan = {
        "input": sources,
        "ingest": options.params(),
        "exact": exact.as_dict(),
        "near": near.as_dict(),
        "index": near_index,
        # The selection --keep sized, so that another --keep is another run (not "up to date").
        "recipe": chosen_recipe.model_copy(update={"select": main_spec}).model_dump(),
        "judge_labels": judge_labels,
    }
    # Checkpoints after every stage: a run killed part-way resumes after its last finished stage.
    export_options = ExportOptions(max_shard_rows=max_shard_rows)
    invocation = shlex.join(
        ["curate", "run", "curate-alpaca", *sources, "--out", str(out)]
        + (["--recipe", recipe] if recipe else [])
        + (["--keep", str(keep_n)] if keep_n is not None else [])
    )
    writer = RunWriter(
        out, "curate-alpaca", plan, export_options, invocation, checkpoints=True, overwrite=overwrite, publish=False
    )
    clock = StageClock()
    try:
        records = clean(writer, sources, options, exact, near, near_index, steps, clock, dask, shard_rows)
        if score_spec is not None and not writer.skip("quality"):
            with clock("quality"):
                records = quality(writer, records, score_spec)
        if score_spec is not None and score_spec.ifd and not writer.skip("ifd"):
            with clock("ifd"):
                records = ifd(writer, records, score_spec)
        if main_spec is not None and not writer.skip("select"):
            with clock("select"):
                # Side selections branch off the same scored pool before the main selection narrows it.
                for side in chosen_recipe.selections:
                    side_selection(writer, records, side, score_spec, judge_labels)
                records = main_selection(writer, records, main_spec, score_spec, judge_labels)
        if main_spec is not None:
            writer.manifest["selections"] = {s.name: f"selections/{s.name}" for s in chosen_recipe.selections}
        with clock("export"):
            manifest = export(writer, records)
    except UpToDate:
        manifest = None
    return close_run("curate-alpaca", manifest, writer.run, out, clock, card)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the curate-alpaca flow locally.")
    parser.add_argument("sources", nargs="*", default=["alpaca"])
    parser.add_argument("--out", default="runs/curate-alpaca")
    parser.add_argument("--dask", help="run per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    parser.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task")
    parser.add_argument("--recipe", help="recipe YAML (default curate/recipes/curate-alpaca.yaml)")
    parser.add_argument("--keep", type=int, help="records the main selection keeps (recipe default 9000)")
    args = parser.parse_args()
    from flows.temporary_server import temporary_server

    with temporary_server():
        result = curate_alpaca(
            sources=args.sources,
            out=args.out,
            dask=args.dask,
            shard_rows=args.shard_rows,
            recipe=args.recipe,
            keep_n=args.keep,
        )
    print_result(result)
    print(f"\ncurate-alpaca done: {result['kept']:,} of {result['in']:,} records kept")


if __name__ == "__main__":
    main()
