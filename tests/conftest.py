from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CURATE_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
os.environ["CURATE_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CURATE_DATA_DIR", str(DATA_DIR))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"shared data not found at {DATA_DIR}; set CURATE_DATA_DIR")
    return DATA_DIR


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``curate`` command as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "curate.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def text_records(texts: list[str | None]):
    """Text records ``r0, r1, ...`` in the record schema (null texts allowed)."""
    import polars as pl

    from curate.schema import KIND_TEXT, conform

    frame = pl.DataFrame(
        {"id": [f"r{i}" for i in range(len(texts))], "kind": [KIND_TEXT] * len(texts), "text": texts},
        schema={"id": pl.String, "kind": pl.String, "text": pl.String},
    )
    return conform(frame)


def ingested(source: str):
    """The kept records of ingesting one source (a registry name or a path)."""
    import polars as pl

    from curate.ingest import Ingest

    return pl.concat([batch for batch, _ in Ingest([source]).batches()])
