"""The run directory contract: accounting, determinism, atomic writes, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from curate.run.directory import AccountingError, RunDir, check_accounting
from tests.conftest import ROOT, run_cli


def test_dedup_run_layout_and_accounting(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    run_cli("dedup", "--exact", "social-posts", "--out", str(out), "--max-shard-rows", "300", "--quiet")
    manifest = json.loads((out / "manifest.json").read_text())
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert shards == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "exact_dedup"]
    for stage in manifest["stages"]:
        assert stage["in"] == stage["kept"] + stage["rejected"]
    assert manifest["records"] == {"in": 5928, "kept": 824, "rejected": 5104}
    assert manifest["inputs"][0]["sha256"] == "031c10a02cc1e529f155c7fbf38f8bcabdf486fc060142f978a562880a3464bc"
    assert manifest["inputs"][0]["count"] == 5928
    assert {"python", "polars", "pyarrow", "curate"} <= set(manifest["versions"])
    rejects = pl.read_parquet(out / "rejects" / "exact_dedup.parquet")
    assert rejects.height == 5097 and set(rejects.columns) >= {
        "id",
        "text",
        "stage",
        "reason",
        "detail",
        "duplicate_of",
    }
    assert pl.read_parquet(out / "annotations" / "exact_dedup.parquet").columns == ["id", "exact_copies"]
    kept = RunDir(out).records()
    assert kept.height == 824 and kept["id"].n_unique() == 824
    assert not RunDir(out).verify()


def test_same_input_same_bytes(tmp_path: Path, data_dir: Path) -> None:
    for name in ("a", "b"):
        run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(tmp_path / name), "--quiet")
    ma, mb = (json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("a", "b"))
    assert ma["outputs"] == mb["outputs"]
    assert ma["fingerprint"] == mb["fingerprint"]


def test_rerun_is_up_to_date_and_a_damaged_run_is_redone(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "run"
    run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(out), "--quiet")
    again = run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(out), "--quiet")
    assert "up to date" in again.stdout
    shard = next((out / "data").iterdir())
    shard.write_bytes(b"garbage")
    redo = run_cli("dedup", "--exact", "alpaca-seed-tasks", "--out", str(out), "--quiet")
    assert "up to date" not in redo.stdout
    assert not RunDir(out).verify()


def test_continue_from_a_run(tmp_path: Path, data_dir: Path) -> None:
    first = tmp_path / "ingested"
    run_cli("ingest", "social-posts", "--out", str(first), "--quiet")
    second = tmp_path / "deduped"
    run_cli("dedup", "--exact", str(first), "--out", str(second), "--quiet")
    manifest = json.loads((second / "manifest.json").read_text())
    assert [s["name"] for s in manifest["stages"]] == ["ingest", "exact_dedup"]
    assert (second / "rejects" / "ingest.parquet").exists()
    assert manifest["records"]["kept"] == 824
    in_place = run_cli("dedup", "--exact", str(first), "--out", str(first), "--quiet")
    assert "824 kept" in in_place.stdout


def test_accounting_is_enforced() -> None:
    manifest = {
        "stages": [{"name": "x", "in": 3, "kept": 1, "rejected": 1, "rejected_by_reason": {"r": 1}}],
        "outputs": {"data": []},
    }
    with pytest.raises(AccountingError, match="3 in != 1 kept"):
        check_accounting(manifest)


def _partial_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_killed_mid_write_leaves_no_partial_file_and_rerun_completes(tmp_path: Path) -> None:
    big = tmp_path / "big.jsonl"
    with open(big, "w") as handle:
        for i in range(400_000):
            handle.write(json.dumps({"text": f"document {i} " + "lorem ipsum dolor " * 20}) + "\n")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "curate.cli", "ingest", str(big), "--out", str(out), "--max-shard-rows", "20000"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.suffix == ".parquet" for p in out.rglob("*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the kill came too late to test anything"
    assert not (out / "data").exists() or not any((out / "data").iterdir())
    done = run_cli("ingest", str(big), "--out", str(out), "--max-shard-rows", "20000", "--quiet")
    assert "400,000 kept" in done.stdout
    assert not _partial_files(out)
    assert not RunDir(out).verify()
