"""The judge-distilled probe: training from real judge labels, bad label files, scoring a run."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import conform
from scorers.probe import DEFAULT_PROBE, QualityProbe, labelled_records
from tests.conftest import run_cli

LABELS = "alpagasus/claude_judge_sample.jsonl"


def test_train_reports_metrics_and_retrains_bit_for_bit(tmp_path: Path, data_dir: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("a.json", "b.json"):
        done = run_cli(
            "probe",
            "train",
            str(data_dir / LABELS),
            "--limit",
            "300",
            "--out",
            str(tmp_path / name),
            "--cache",
            str(cache),
        )
        assert "5-fold ROC AUC" in done.stdout
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    probe = QualityProbe.load(tmp_path / "a.json")
    assert probe.metrics["labels"] == 300 and len(probe.weights) == 384 + 384 + 1 + 3
    assert probe.metrics["cv_auc"] > 0.55  # the judge's labels are learnable: better than chance on held-out folds


def test_shipped_probe_is_small_and_documented() -> None:
    probe = QualityProbe.load(DEFAULT_PROBE)
    assert DEFAULT_PROBE.stat().st_size < 8_000  # a few kB: float32 weights, base64
    assert probe.metrics["labels"] == 10_400 and probe.metrics["positives"] == 1_055
    assert probe.metrics["labels_sha256"] == "1321e4d528bfcb2a3acdf419e6e05f9206219568c9bed638667e74c48193404d"


def test_bad_label_files(tmp_path: Path) -> None:
    records = conform(
        pl.DataFrame(
            {
                "id": ["a"],
                "source_id": ["0"],
                "kind": ["instruction"],
                "instruction": ["x"],
                "input": [""],
                "output": ["y"],
                "text": ["x\n\ny"],
            }
        )
    )
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"rowid": 1, "good": true}\n')
    with pytest.raises(CurateError, match="needs columns row"):
        labelled_records(records, wrong)
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"row": 0, "score_at_least_4_5": true}\n{"row": 99, "score_at_least_4_5": false}\n')
    with pytest.raises(CurateError, match="1 labels name records that do not exist"):
        labelled_records(records, missing)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(CurateError, match="cannot read judge labels"):
        labelled_records(records, broken)


def test_score_annotates_every_record(tmp_path: Path, data_dir: Path) -> None:
    out = tmp_path / "scored"
    run_cli("score", "alpaca-seed-tasks", "--out", str(out), "--cache", str(tmp_path / "cache"))
    scores = pl.read_parquet(out / "annotations" / "quality.parquet")
    assert scores.height == 175 and scores["quality_probe"].is_between(0, 1).all()
    assert scores["coherence"].is_between(-1, 1).all() and (scores["response_tokens"] > 0).all()
    top = tmp_path / "top"
    run_cli("select", str(out), "--strategy", "top_k", "--by", "quality_probe", "--n", "20", "--out", str(top))
    assert json.loads((top / "manifest.json").read_text())["stages"][-1]["kept"] == 20
