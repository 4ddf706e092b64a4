"""The curate-alpaca Prefect flow on a real (temporary, 127.0.0.1) Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from prefect.testing.utilities import prefect_test_harness

from flows.curate_alpaca import curate_alpaca


def test_curate_alpaca_flow_on_seed_tasks(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    recipe = tmp_path / "recipe.yaml"
    default = (Path(__file__).parents[1] / "curate" / "recipes" / "curate-alpaca.yaml").read_text()
    recipe.write_text(default.replace("n: 1000", "n: 40"))
    with prefect_test_harness(server_startup_timeout=180):
        result = curate_alpaca(sources=["alpaca-seed-tasks"], out=str(out), recipe=str(recipe), keep_n=100)
        again = curate_alpaca(sources=["alpaca-seed-tasks"], out=str(out), recipe=str(recipe), keep_n=100)
    assert result["run"] == str(out) and result["in"] == 175
    assert result["in"] == result["kept"] + result["rejected"]
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in result.items() if k != "seconds"}
    stages = ["ingest", "exact_dedup", "near_dup", "hygiene", "length", "language", "quality", "select"]
    assert list(result["seconds"]) == [*stages, "export", "card"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == [
        "ingest",
        "exact_dedup",
        "near_dup",
        "hygiene",
        "length",
        "language",
        "quality",
        "select",
    ]
    assert result["kept"] == 100
    assert (out / "annotations" / "near_dup.parquet").exists()
    quality = pl.read_parquet(out / "annotations" / "quality.parquet")
    assert {"quality_probe", "helpfulness_probe", "quality_score", "lima_score", "degenerate"} <= set(quality.columns)
    # The 100 kept are the 100 best by the combined score (nulls, failed checks, last; ties by id) under the
    # recipe's median guard: answers under 0.8 of the pool's median length fill at most (100 - 1) // 2 places,
    # the best of them, and the longer ones the rest, best first.
    kept = pl.read_parquet(out / "data")
    dropped = pl.read_parquet(out / "rejects").filter(pl.col("stage") == "select")
    pool = pl.concat([kept.select("id", "output"), dropped.select("id", "output")])
    pool = pool.join(quality.select("id", "quality_score"), on="id").with_columns(
        words=pl.col("output").str.count_matches(r"\S+"), kept=pl.col("id").is_in(kept["id"].to_list())
    )
    pool = pool.with_columns(short=pl.col("words") < 0.8 * pool["words"].median())
    ranked = pool.sort(["quality_score", "id"], descending=[True, False], nulls_last=True)
    short, long = ranked.filter(pl.col("short")), ranked.filter(~pl.col("short"))
    assert kept.height == 100 and 0 < short["kept"].sum() <= 49
    assert short["kept"].to_list() == sorted(short["kept"].to_list(), reverse=True)  # the best short ones
    assert long["kept"].to_list() == sorted(long["kept"].to_list(), reverse=True)  # the best long ones
    assert kept["output"].str.count_matches(r"\S+").median() >= 0.8 * pool["words"].median()
    assert not quality.filter(pl.col("degenerate"))["quality_score"].is_not_null().any()
    # The LIMA-style selection is its own run directory, named in the main manifest, books complete.
    assert manifest["selections"] == {"lima-1k": "selections/lima-1k"}
    side = json.loads((out / "selections" / "lima-1k" / "manifest.json").read_text())
    assert side["records"] == {"in": 175, "kept": 40, "rejected": 135}
    assert side["stages"][-1]["params"]["strategy"] == "kcenter"
    assert (out / "selections" / "lima-1k" / "README.md").exists()
    card = (out / "README.md").read_text()
    assert "### Quality scores and selection" in card and "`helpfulness_probe`" in card
    assert "quality_probe 0.6, helpfulness_probe 0.4" in card and "median response kept at least 0.8" in card


def test_select_lima_flow_scores_and_selects(tmp_path: Path, data_dir: Path) -> None:
    from flows.select_lima import select_lima_1k

    out = tmp_path / "lima"
    with prefect_test_harness(server_startup_timeout=180):
        result = select_lima_1k(source="alpaca-seed-tasks", out=str(out), n=20)
    assert result["in"] == 175 and result["kept"] == 20 and result["rejected"] == 155
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "quality", "select"]
    # The reported diversity is the mean pairwise cosine of the kept records' vectors, re-derived here.
    from curate.embed.encoder import Embedder, EmbedSettings
    from curate.embed.pairs import pair_vectors, record_vectors

    vectors = record_vectors(*pair_vectors(pl.read_parquet(out / "data"), Embedder(EmbedSettings(precision="fp32"))))
    total = vectors.astype(np.float64).sum(axis=0)
    mean_cosine = (total @ total - len(vectors)) / (len(vectors) * (len(vectors) - 1))
    assert abs(manifest["stages"][-1]["stats"]["mean_pairwise_cosine"] - mean_cosine) < 5e-3
