"""The ``curate-alpaca`` flow: Alpaca 52k (or any source) -> exact dedup -> near dedup -> filters
-> quality probe -> keep the best ~9k -> export -> dataset card, with the side selections of the
recipe (a LIMA-style 1k) exported beside it as their own run directories under ``RUN/selections/``.

The flow only wires library calls into tasks; all logic lives in :mod:`curate` and :mod:`scorers`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE

from curate.dedup.exact import ExactDedupParams, exact_duplicates
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams, add_to_index, near_duplicates
from curate.funnel import funnel_table, summary
from curate.ingest import IngestOptions
from curate.normalize import TextNormalization
from curate.pipeline import ExportOptions, RunWriter, UpToDate
from curate.recipe import load_recipe
from curate.run import RunDir

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "curate" / "recipes" / "curate-alpaca.yaml"


@task(cache_policy=NONE)
def ingest(writer: RunWriter, sources: list[str], options: IngestOptions):
    return writer.open_input(sources, options, progress=False)


@task(cache_policy=NONE)
def exact_dedup(writer: RunWriter, records, params: ExactDedupParams):
    return writer.add(exact_duplicates(records, params))


@task(cache_policy=NONE)
def near_dedup(writer: RunWriter, records, params: NearDedupParams, index: str | None):
    from curate.dedup.index import open_index

    opened = open_index(index, params) if index else None
    result = near_duplicates(records, params, index=opened)
    kept = writer.add(result)
    if opened is not None:
        add_to_index(opened, result)
    get_run_logger().info("near_dup: %s", result.stats)
    return kept


@task(cache_policy=NONE)
def filter_stage(writer: RunWriter, records, use: str, params: dict[str, Any], name: str):
    from curate.filtering import run_filter
    from curate.registry import get

    return writer.add(run_filter(records, get("filter", use)(**params), name))


def _embedder(spec):
    from scorers.embedding import Embedder, EmbeddingCache, EmbedSettings

    embedder = Embedder(EmbedSettings(model=spec.embedder))
    return embedder, EmbeddingCache(EmbeddingCache.default_root(), embedder.key(), embedder.dimension)


@task(cache_policy=NONE)
def quality(writer: RunWriter, records, spec):
    from scorers.probe import DEFAULT_PROBE, QualityProbe, probe_stage

    embedder, cache = _embedder(spec)
    result, _ = probe_stage(records, QualityProbe.load(spec.probe or DEFAULT_PROBE), embedder, cache)
    get_run_logger().info("quality: %s", result.stats)
    return writer.add(result)


@task(cache_policy=NONE)
def ifd(writer: RunWriter, records, spec):
    from scorers.ifd import IfdParams, ifd_stage

    return writer.add(ifd_stage(records, IfdParams(model=spec.ifd_model)))


def _selection_inputs(writer: RunWriter, records, spec, score_spec, labels: str | None):
    """Scores, vectors (for diversity strategies) and judge labels for a selection."""
    from scorers.probe import judge_labels, pair_vectors

    scores = writer.annotation_column(spec.by) if spec.by and spec.by != "response_words" else None
    vectors = None
    if spec.strategy in ("diverse", "kcenter"):
        import numpy as np

        embedder, cache = _embedder(score_spec)
        prompt, response = pair_vectors(records, embedder, cache)
        vectors = prompt + response
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    judged = None
    if labels:
        try:
            judged = judge_labels(labels)
        except Exception as exc:  # the report is optional: a missing label file must not stop the run
            get_run_logger().warning("judge labels %s not used: %s", labels, exc)
    return scores, vectors, judged


@task(cache_policy=NONE)
def side_selection(writer: RunWriter, records, spec, score_spec, labels: str | None) -> str:
    from curate.select import select
    from dataset_cards.card import write_card

    out = writer.run.root / "selections" / spec.name
    branch = writer.branch(out, f"curate-alpaca/{spec.name}", {"select": spec.model_dump()})
    scores, vectors, judged = _selection_inputs(writer, records, spec, score_spec, labels)
    result = select(records, spec.params(), scores=scores, vectors=vectors, labels=judged)
    get_run_logger().info("%s: %s", spec.name, {k: v for k, v in result.stats.items() if k != "report"})
    branch.manifest["name"] = spec.name
    branch.finish(branch.add(result))
    write_card(out)
    return str(out)


@task(cache_policy=NONE)
def main_selection(writer: RunWriter, records, spec, score_spec, labels: str | None):
    from curate.select import select

    scores, vectors, judged = _selection_inputs(writer, records, spec, score_spec, labels)
    return writer.add(select(records, spec.params(), scores=scores, vectors=vectors, labels=judged))


@task(cache_policy=NONE)
def card(out: str) -> str:
    from dataset_cards.card import write_card

    return str(write_card(out))


@task(cache_policy=NONE)
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
    judge_labels: str | None = "alpagasus-claude-sample",
) -> dict[str, Any]:
    """Curate an instruction dataset; returns the run's record counts and where it is.

    ``recipe`` (a YAML path) supplies the filters, the quality scorers and the selections; the
    default is curate/recipes/curate-alpaca.yaml. ``keep_n`` overrides the main selection's size;
    ``judge_labels`` (registry name or path) are judge decisions used only to report the positive
    rate inside the selection against the base rate (None: no report).
    """
    logger = get_run_logger()
    chosen_recipe = load_recipe(recipe or DEFAULT_RECIPE)
    steps = chosen_recipe.filters
    score_spec, main_spec = chosen_recipe.score, chosen_recipe.select
    if main_spec is not None and keep_n is not None:
        main_spec = main_spec.model_copy(update={"n": keep_n})
    if sources and sources != ["alpaca"] and judge_labels == "alpagasus-claude-sample":
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
        "recipe": chosen_recipe.model_dump(),
        "judge_labels": judge_labels,
    }
    # Checkpoints after every stage: a run killed part-way resumes after its last finished stage.
    writer = RunWriter(out, "curate-alpaca", plan, ExportOptions(max_shard_rows=max_shard_rows), checkpoints=True)
    try:
        records = ingest(writer, sources, options)
        if not writer.skip("exact_dedup"):
            records = exact_dedup(writer, records, exact)
        if not writer.skip("near_dup"):
            records = near_dedup(writer, records, near, near_index)
        for step in steps:
            if not writer.skip(step.name or step.use):
                records = filter_stage(writer, records, step.use, step.params, step.name or step.use)
        if score_spec is not None and not writer.skip("quality"):
            records = quality(writer, records, score_spec)
        if score_spec is not None and score_spec.ifd and not writer.skip("ifd"):
            records = ifd(writer, records, score_spec)
        if main_spec is not None and not writer.skip("select"):
            # Side selections branch off the same scored pool before the main selection narrows it.
            for side in chosen_recipe.selections:
                side_selection(writer, records, side, score_spec, judge_labels)
            records = main_selection(writer, records, main_spec, score_spec, judge_labels)
        if main_spec is not None:
            writer.manifest["selections"] = {s.name: f"selections/{s.name}" for s in chosen_recipe.selections}
        manifest = export(writer, records)
    except UpToDate:
        logger.info("%s is up to date; nothing to do", out)
        manifest = RunDir(out).manifest()
    card_path = card(out)
    table = funnel_table(manifest, markdown=True)
    create_markdown_artifact(
        key="curate-alpaca-funnel",
        markdown=f"# curate-alpaca funnel\n\n{table}\n\nRun: `{out}`; card: `{card_path}`",
        description="stage, in, kept, rejected by reason",
    )
    logger.info("funnel:\n%s", funnel_table(manifest))
    return {"run": out, **manifest["records"]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the curate-alpaca flow locally.")
    parser.add_argument("sources", nargs="*", default=["alpaca"])
    parser.add_argument("--out", default="runs/curate-alpaca")
    args = parser.parse_args()
    result = curate_alpaca(sources=args.sources, out=args.out)
    print(summary(RunDir(args.out).manifest(), args.out))
    print(f"  card: {args.out}/README.md (figures in {args.out}/figures/)")
    print(f"\ncurate-alpaca done: {result['kept']:,} of {result['in']:,} records kept")


if __name__ == "__main__":
    main()
