"""The ``curate-pretrain`` flow: pretraining corpora (JSONL, Parquet, text; many shards) ->
exact dedup -> near dedup -> language and quality heuristics -> PII -> export -> dataset card.

It reuses curate-alpaca's tasks; the filters come from curate/recipes/curate-pretrain.yaml
(language, gopher_quality, c4_quality, pii with redaction) and map over shards of
``shard_rows`` records, on local threads or on a Dask cluster (``dask``).
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from prefect import flow

from curate.dedup.exact import ExactDedupParams
from curate.dedup.minhash import ShingleParams
from curate.dedup.near import NearDedupParams
from curate.io.ingest import IngestOptions
from curate.recipes.recipe import load_recipe
from curate.records.normalize import TextNormalization
from curate.run.pipeline import ExportOptions, RunWriter, UpToDate
from flows.curate_alpaca import card, clean, export
from flows.report import StageClock, close_run, print_result

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "curate" / "recipes" / "curate-pretrain.yaml"


@flow(name="curate-pretrain", log_prints=True)
def curate_pretrain(
    sources: list[str],
    out: str = "runs/curate-pretrain",
    format: str | None = None,
    text_field: str | None = None,
    delimiter: str | None = None,
    near_threshold: float = 0.8,
    ngram: int = 5,
    num_perm: int = 128,
    near_index: str | None = None,
    max_shard_rows: int = 100_000,
    strict: bool = False,
    recipe: str | None = None,
    dask: str | None = None,
    shard_rows: int = 100_000,
    overwrite: bool = False,
    near_out_of_core_above: int | None = 1_000_000,
) -> dict[str, Any]:
    """Curate pretraining text; returns the run's record counts, where it is and stage seconds.

    ``sources``: files, folders of shards or registry names. ``text_field`` reads that field of
    JSONL/Parquet rows as the text; ``delimiter`` splits plain-text files on lines equal to it.
    Near dedup runs out of core (same result, bounded memory) above ``near_out_of_core_above``
    records (None: never).
    """
    spec = load_recipe(recipe or DEFAULT_RECIPE)
    options = IngestOptions(format=format, text_field=text_field, delimiter=delimiter, strict=strict)
    exact_spec = spec.dedup.exact if spec.dedup and spec.dedup.exact else None
    exact = ExactDedupParams(
        TextNormalization(**exact_spec.model_dump()) if exact_spec else TextNormalization("NFKC", True, True)
    )
    near = NearDedupParams(threshold=near_threshold, num_perm=num_perm, shingles=ShingleParams(ngram=ngram))
    plan = {
        "input": sources,
        "ingest": options.params(),
        "exact": exact.as_dict(),
        "near": near.as_dict(),
        "index": near_index,
        "filters": [step.model_dump() for step in spec.filters],
    }
    export_options = ExportOptions(max_shard_rows=max_shard_rows)
    invocation = shlex.join(
        ["curate", "run", "curate-pretrain", *sources, "--out", str(out)]
        + (["--recipe", recipe] if recipe else [])
        + (["--text-field", text_field] if text_field else [])
    )
    writer = RunWriter(out, "curate-pretrain", plan, export_options, invocation, checkpoints=True, overwrite=overwrite)
    clock = StageClock()
    try:
        records = clean(
            writer,
            sources,
            options,
            exact,
            near,
            near_index,
            spec.filters,
            clock,
            dask,
            shard_rows,
            near_out_of_core_above,
        )
        with clock("export"):
            manifest = export(writer, records)
    except UpToDate:
        manifest = None
    return close_run("curate-pretrain", manifest, out, clock, card)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the curate-pretrain flow locally.")
    parser.add_argument("sources", nargs="+")
    parser.add_argument("--out", default="runs/curate-pretrain")
    parser.add_argument("--text-field")
    parser.add_argument("--delimiter")
    parser.add_argument("--dask", help="run per-shard tasks on a Dask cluster: tcp://HOST:PORT or local:N")
    parser.add_argument("--shard-rows", type=int, default=100_000, help="records per shard task")
    args = parser.parse_args()
    result = curate_pretrain(
        sources=args.sources,
        out=args.out,
        text_field=args.text_field,
        delimiter=args.delimiter,
        dask=args.dask,
        shard_rows=args.shard_rows,
    )
    print_result(result)


if __name__ == "__main__":
    main()
