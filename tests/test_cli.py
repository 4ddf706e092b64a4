"""The command line as users meet it: help, summaries, errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, run_cli


def test_help_is_light() -> None:
    code = (
        "import sys, curate.cli; curate.cli.build_parser(); print(sorted(m for m in ('polars', 'torch', "
        "'pyarrow', 'prefect', 'sentence_transformers', 'numba') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"
    assert "ingest" in run_cli("--help").stdout


def test_ingest_inspect_export(tmp_path: Path, data_dir: Path) -> None:
    run = tmp_path / "run"
    out = run_cli("ingest", "alpaca-eval", "--out", str(run)).stdout
    assert "805 records in, 805 kept, 0 rejected" in out and str(run) in out
    table = run_cli("inspect", str(run)).stdout
    assert "ingest" in table and "805" in table
    funnel = json.loads(run_cli("inspect", str(run), "--json").stdout)
    assert funnel["funnel"][0] == {"stage": "ingest", "in": 805, "kept": 805, "rejected": 0, "reasons": {}}
    exported = tmp_path / "exported"
    run_cli("export", str(run), "--out", str(exported), "--max-shard-rows", "500")
    assert len(list((exported / "data").glob("train-*-of-00002.parquet"))) == 2


def test_errors_name_the_place_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{oops\n')
    done = run_cli("ingest", str(bad), "--out", str(tmp_path / "r"), "--strict", check=False)
    assert done.returncode == 2
    assert f"{bad}:2" in done.stderr and "Traceback" not in done.stderr
    missing = run_cli("inspect", str(tmp_path / "nope"), check=False)
    assert missing.returncode == 2 and "not a run directory" in missing.stderr


def test_non_strict_counts_rejects(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{oops\n')
    out = run_cli("ingest", str(bad), "--out", str(tmp_path / "r")).stdout
    assert "2 records in, 1 kept, 1 rejected" in out and "malformed_json 1" in out


def test_run_loads_with_datasets(tmp_path: Path, data_dir: Path) -> None:
    import datasets

    run = tmp_path / "run"
    run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(run), "--max-shard-rows", "100")
    loaded = datasets.load_dataset("parquet", data_dir=str(run / "data"), split="train")
    assert loaded.num_rows == 175
    assert {"id", "instruction", "input", "output", "text"} <= set(loaded.column_names)
