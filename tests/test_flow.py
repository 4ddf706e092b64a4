"""The curate-alpaca Prefect flow on a real (temporary, 127.0.0.1) Prefect server."""

from __future__ import annotations

import json
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

from flows.curate_alpaca import curate_alpaca


def test_curate_alpaca_flow_on_seed_tasks(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    with prefect_test_harness(server_startup_timeout=120):
        result = curate_alpaca(sources=["alpaca-seed-tasks"], out=str(out))
        again = curate_alpaca(sources=["alpaca-seed-tasks"], out=str(out))
    assert result["run"] == str(out) and result["in"] == 175
    assert result["in"] == result["kept"] + result["rejected"]
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in result.items() if k != "seconds"}
    stages = ["ingest", "exact_dedup", "near_dup", "hygiene", "length", "language"]
    assert list(result["seconds"]) == [*stages, "export", "card"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == [
        "ingest",
        "exact_dedup",
        "near_dup",
        "hygiene",
        "length",
        "language",
    ]
    assert (out / "annotations" / "near_dup.parquet").exists()
