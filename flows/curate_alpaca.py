"""The ``curate-alpaca`` flow: Alpaca 52k (or any source) -> exact dedup -> near dedup -> filters
-> export.

Later stages (scoring, selection, card) join here as they land. The flow only wires
library calls into tasks; all logic lives in :mod:`curate`.
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
) -> dict[str, Any]:
    """Curate an instruction dataset; returns the run's record counts and where it is.

    ``recipe`` (a YAML path) supplies the filters; the default is curate/recipes/curate-alpaca.yaml.
    """
    logger = get_run_logger()
    steps = load_recipe(recipe or DEFAULT_RECIPE).filters
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
