"""The Python API as the docs show it: the documented blocks run as written, on a slice of Alpaca."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import text_records

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def alpaca_slice(tmp_path: Path, data_dir: Path) -> Path:
    rows = json.loads((data_dir / "alpaca_data.json").read_text())[:400]
    path = tmp_path / "alpaca-400.json"
    path.write_text(json.dumps(rows))
    return path


def run_block(code: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env={**os.environ}, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_ten_line_example_curates_and_keeps_the_books(alpaca_slice: Path, tmp_path: Path) -> None:
    block = python_blocks()[0]
    constants = 'SOURCE, N, OUT = "alpaca", 9_000, "runs/alpaca-9k"'
    assert constants in block, "the example's knobs moved; keep them on one line"
    assert len([line for line in block.splitlines() if line.strip()]) <= 14
    code = block.replace(constants, f'SOURCE, N, OUT = {str(alpaca_slice)!r}, 40, "runs/alpaca-9k"')

    first = run_block(code, tmp_path)
    run = tmp_path / "runs" / "alpaca-9k"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["records"]["kept"] == 40
    assert manifest["records"]["in"] == 400 == manifest["records"]["kept"] + manifest["records"]["rejected"]
    stages = [s["name"] for s in manifest["stages"]]
    assert stages == ["ingest", "exact_dedup", "near_dup", "hygiene", "length", "language", "quality", "select"]
    for stage in manifest["stages"]:
        assert stage["in"] == stage["kept"] + stage["rejected"]
    assert (run / "README.md").is_file() and (run / "annotations" / "quality.parquet").is_file()
    assert "400 records in, 40 kept, 360 rejected" in first.stdout

    shards = sorted((run / "data").glob("*.parquet"))
    before = [p.read_bytes() for p in shards]
    again = run_block(code, tmp_path)
    assert "up to date" in again.stdout
    assert [p.read_bytes() for p in shards] == before


def test_the_frame_functions_example_runs(alpaca_slice: Path, tmp_path: Path) -> None:
    block = python_blocks()[1]
    code = block.replace('curate.ingest("alpaca")', f"curate.ingest({str(alpaca_slice)!r})").replace("n=9000", "n=25")
    done = run_block(code, tmp_path)
    assert done.stdout.startswith("25 ")
    assert "not_selected" in done.stdout


def test_a_bad_filter_parameter_is_a_clear_error() -> None:
    import curate
    from curate.errors import CurateError

    with pytest.raises((CurateError, ValueError), match="length"):
        curate.filter(text_records(["a short text", "another one"]), "length", min_wrds=3)


def test_api_names_are_not_shadowed_by_subpackages() -> None:
    import curate
    import curate.run.directory
    import curate.selection.strategies
    import curate.training.trainer
    from curate import api

    for name in curate.__all__:
        assert getattr(curate, name) is getattr(api, name), name
