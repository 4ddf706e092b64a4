"""The length filter and the filter plumbing (registry, run_filter, CLI, recipe)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import conform
from curate.stages.filter import run_filter
from curate.stages.registry import available, get
from tests.conftest import run_cli


def instruction_records(rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "id": [f"r{i}" for i in range(len(rows))],
                "kind": ["instruction"] * len(rows),
                "instruction": [r[0] for r in rows],
                "input": [r[1] for r in rows],
                "output": [r[2] for r in rows],
                "text": ["\n\n".join(p for p in r if p) for r in rows],
            }
        )
    )


def test_length_bounds_and_reasons() -> None:
    records = instruction_records(
        [("Say hi", "", "hi there"), ("A very long instruction here", "", "ok fine"), ("x", "", "one")]
    )
    stage = get("filter", "length")(min_words={"output": 2}, max_chars={"instruction": 20}, tokenizer="minilm")
    result = run_filter(records, stage)
    result.check()
    assert result.rejects["reason"].to_list() == ["instruction_too_long", "output_too_short"]
    assert result.rejects["detail"].to_list() == ["28 chars in instruction > 20", "1 words in output < 2"]
    assert result.annotations["output_tokens"].to_list() == [2, 2, 1]
    assert result.kept["id"].to_list() == ["r0"]


def test_registry_and_bad_params() -> None:
    assert "length" in available("filter")
    with pytest.raises(CurateError, match="unknown filter 'nope'"):
        get("filter", "nope")
    with pytest.raises(CurateError, match="min_wordz"):
        get("filter", "length")(min_wordz={"output": 1})


def test_cli_filter_with_recipe_and_params(tmp_path: Path, data_dir: Path) -> None:
    recipe = tmp_path / "filters.yaml"
    recipe.write_text("filters:\n  - use: length\n    params: {min_words: {output: 3}}\n")
    out = tmp_path / "run"
    done = run_cli("filter", "alpaca-seed-tasks", "--recipe", str(recipe), "--out", str(out))
    assert "length" in done.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["stages"][-1]
    assert stage["name"] == "length" and stage["in"] == 175 and stage["in"] == stage["kept"] + stage["rejected"]
    assert pl.read_parquet(out / "annotations" / "length.parquet").height == 175
    run_cli(
        "filter",
        "alpaca-seed-tasks",
        "--use",
        "length",
        "--param",
        'length.min_words={"output": 3}',
        "--out",
        str(tmp_path / "run2"),
    )
    assert json.loads((tmp_path / "run2" / "manifest.json").read_text())["stages"][-1]["kept"] == stage["kept"]
    listed = run_cli("filters").stdout
    assert "length" in listed
