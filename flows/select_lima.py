"""The ``select-lima-1k`` flow: a LIMA-style 1k (quality and diversity) from any instruction run or source.

Scores the records with the quality stage (both judge probes and the combined scores) when the input has
no ``by`` annotation yet, then selects with quality-weighted k-center greedy among the ``candidates`` best
by ``lima_score`` (helpful long-form answers that stay accurate) and exports the selection as its own run
directory with its card. The same as ``curate score`` followed by ``curate select --strategy kcenter``.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow

from curate.io.ingest import IngestOptions
from curate.recipes.recipe import ScoreSpec, SelectSpec
from curate.run.directory import RunDir
from curate.run.funnel import summary
from curate.run.pipeline import RunWriter, UpToDate
from flows.curate_alpaca import card, export, ingest, main_selection, quality
from flows.report import StageClock, close_run


@flow(name="select-lima-1k", log_prints=True)
def select_lima_1k(
    source: str = "alpaca",
    out: str = "runs/lima-1k",
    n: int = 1000,
    strategy: str = "kcenter",
    by: str = "lima_score",
    probe: str | None = None,
    judge_labels: str | None = None,
    candidates: int | None = 2000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Select ``n`` records from ``source`` (a run directory or a dataset) for quality and diversity."""
    spec = SelectSpec(name="lima-1k", strategy=strategy, n=n, by=by, candidates=candidates)
    score_spec = ScoreSpec(probe=probe)
    plan = {"source": source, "select": spec.model_dump(), "probe": probe}
    writer = RunWriter(out, "select-lima-1k", plan, overwrite=overwrite, publish=False)
    clock = StageClock()
    try:
        with clock("ingest"):
            records = ingest(writer, [source], IngestOptions())
        if by != "response_words" and writer.annotation_column(by) is None:
            with clock("quality"):
                records = quality(writer, records, score_spec)
        with clock("select"):
            records = main_selection(writer, records, spec, score_spec, judge_labels)
        with clock("export"):
            manifest = export(writer, records)
    except UpToDate:
        manifest = None
    return close_run("select-lima-1k", manifest, writer.run, out, clock, card)


def main() -> None:
    parser = argparse.ArgumentParser(description="Select a LIMA-style 1k locally.")
    parser.add_argument("source")
    parser.add_argument("--out", default="runs/lima-1k")
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    select_lima_1k(source=args.source, out=args.out, n=args.n)
    print(summary(RunDir(args.out).manifest(), args.out))


if __name__ == "__main__":
    main()
