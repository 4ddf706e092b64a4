"""The judge-distilled probe: training from real judge labels, bad label files, scoring a run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import conform
from curate.selection.strategies import median_guarded
from scorers.probe import (
    DEFAULT_PROBE,
    HELPFULNESS_PROBE,
    QualityProbe,
    agreeing_labels,
    choose_c,
    choose_weights,
    choose_weights_and_floor,
    combined_score,
    labelled_records,
    top_and_worst_lift,
)
from scorers.signals import HASH_FEATURES, SCALARS, failed_checks, signal_columns, signals
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
            "1000",
            "--out",
            str(tmp_path / name),
            "--cache",
            str(cache),
        )
        assert "5-fold ROC AUC" in done.stdout
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    probe = QualityProbe.load(tmp_path / "a.json")
    assert probe.metrics["labels"] == 1000 and len(probe.weights) == len(SCALARS) + HASH_FEATURES
    assert probe.metrics["cv_auc"] > 0.6  # 0.65 at 1,000 labels: the judge's labels are learnable, not chance


def test_shipped_probes_are_small_and_documented() -> None:
    for path, positives, sha in (
        (DEFAULT_PROBE, 1_055, "1321e4d528bfcb2a3acdf419e6e05f9206219568c9bed638667e74c48193404d"),
        (HELPFULNESS_PROBE, 417, "c3e2244788ad7690036ad07afaaed68a924b8746226345f2af74f57d49d18dc5"),
    ):
        probe = QualityProbe.load(path)
        assert path.stat().st_size < 400_000  # 65,560 float32 weights, base64
        assert probe.metrics["labels"] == 10_400 and probe.metrics["positives"] == positives
        assert probe.metrics["labels_sha256"] == sha and probe.metrics["cv_auc"] > 0.6


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
    assert scores["helpfulness_probe"].is_between(0, 1).all() and scores["degenerate"].dtype == pl.Boolean
    assert scores["coherence"].is_between(0, 1).all() and (scores["response_tokens"] > 0).all()
    assert set(scores["arithmetic_checked"].unique().to_list()) <= {-1, 0, 1}
    assert scores["count_constraint"].dtype == pl.Int8 and (scores["count_constraint"] != 0).any()
    # The combined scores are null exactly where a label-free check fails and, for lima_score, where the
    # response is under its 30-word floor (quality_score has none: the 9k's median guard keeps its length).
    joined = scores.join(pl.read_parquet(out / "data").select("id", "output"), on="id")
    failed = pl.Series(failed_checks(joined))
    assert failed.any() and (joined["quality_score"].is_null() == failed).all()
    short = joined["output"].str.count_matches(r"\S+") < 30
    assert (joined["lima_score"].is_null() == (short | failed)).all()
    top = tmp_path / "top"
    run_cli("select", str(out), "--strategy", "top_k", "--by", "quality_probe", "--n", "20", "--out", str(top))
    assert json.loads((top / "manifest.json").read_text())["stages"][-1]["kept"] == 20


def test_two_label_files_must_agree(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"row": 0, "score_at_least_4_5": true}\n{"row": 1, "score_at_least_4_5": false}\n')
    short = tmp_path / "short.jsonl"
    short.write_text('{"row": 0, "score_at_least_4_5": true}\n')
    ids = tmp_path / "ids.jsonl"
    ids.write_text('{"id": "a", "label": true}\n{"id": "b", "label": false}\n')
    none = tmp_path / "none.jsonl"
    none.write_text('{"row": 0, "score_at_least_4_5": false}\n{"row": 1, "score_at_least_4_5": false}\n')
    assert set(agreeing_labels({"a": rows, "b": rows})) == {"a", "b"}
    with pytest.raises(CurateError, match=r"short.jsonl: 1 labels, but .*rows.jsonl has 2"):
        agreeing_labels({"a": rows, "b": short})
    with pytest.raises(CurateError, match=r"ids.jsonl: labels name records by id, but .*rows.jsonl by source_id"):
        agreeing_labels({"a": rows, "b": ids})
    with pytest.raises(CurateError, match=r"none.jsonl: no positive labels"):
        agreeing_labels({"a": rows, "b": none})


def test_combined_score_weights_floor_and_missing_column() -> None:
    z = {"quality_probe": np.array([1.0, -1.0, 0.5, 2.0]), "helpfulness_probe": np.array([0.0, 2.0, 0.5, 1.0])}
    words = np.array([10, 40, 3, 50])
    score = combined_score(z, {"quality_probe": 0.75, "helpfulness_probe": 0.25}, words, min_response_words=5)
    assert np.allclose(score[[0, 1, 3]], [0.75, -0.25, 1.75]) and np.isnan(score[2])
    with pytest.raises(CurateError, match=r"score.combine.x.weights: no probe column 'ifd'"):
        combined_score(z, {"ifd": 1.0}, words, where="score.combine.x")


def test_choose_weights_finds_the_balance_of_two_judges() -> None:
    # Judge a likes short answers, judge b long ones; only records 0-1 please both, and a 50/50 score ranks them top.
    a = np.array([2.0, 2.0, 3.0, 3.0, -3.0, -3.0, 0.0, 0.0])
    b = np.array([2.0, 2.0, -3.0, -3.0, 3.0, 3.0, 0.0, 0.0])
    ya, yb = np.array([1, 1, 1, 1, 0, 0, 0, 0]), np.array([1, 1, 0, 0, 1, 1, 0, 0])
    words = np.full(8, 20)
    weights = choose_weights({"a": a, "b": b}, {"a": ya, "b": yb}, 0.25, words)
    assert weights == {"a": 0.5, "b": 0.5}
    # Only judge a's favourites when the other judge is not looked at: the weight moves to a.
    only_a = np.array([0, 0, 1, 1, 0, 0, 0, 0])
    assert choose_weights({"a": a, "b": b}, {"a": only_a}, 0.25, words)["a"] > 0.5


def test_floor_is_chosen_by_lift_but_never_for_a_short_selection() -> None:
    # Both judges like the 1-2 word answers most (a floor of 0 lifts them best), but a top of those would
    # have a median answer far under the pool's: the floor rises until the top's median is >= 0.75 of it.
    words = np.array([1, 2, 1, 2, 30, 30, 30, 30, 30, 30, 30, 30])
    a = np.array([3.0, 3.0, 3.0, 3.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    _, floor = choose_weights_and_floor({"a": a, "b": a}, {"a": y, "b": y}, 2 / 12, words, floors=(0, 3, 5))
    assert floor == 3
    # Without the guard the lift alone would keep the short answers.
    _, floor = choose_weights_and_floor(
        {"a": a, "b": a}, {"a": y, "b": y}, 2 / 12, words, floors=(0, 3, 5), min_median_ratio=0.0
    )
    assert floor == 0


def test_choose_c_prefers_strong_regularization_for_a_weak_signal(data_dir: Path) -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    scalars = rng.normal(size=(600, 3))
    y = (scalars[:, 0] + rng.normal(scale=2.0, size=600) > 1.0).astype(int)
    noise = sp.csr_matrix(rng.random((600, 400)) < 0.05, dtype=float)  # 400 features of pure noise
    assert choose_c(scalars, noise, y, grid=(0.01, 100.0)) == 0.01


def test_probe_features_see_the_prompt_apart_from_the_response() -> None:
    rows = {"id": ["a", "b"], "source_id": ["0", "1"], "kind": ["instruction"] * 2, "input": ["", ""]}
    records = conform(
        pl.DataFrame(
            {**rows, "instruction": ["Rewrite this sentence", "Explain gravity"], "output": ["gravity", "gravity"]}
        ).with_columns(text=pl.col("instruction"))
    )
    _, hashed = signals(records)
    # Response "gravity": 1 gram; prompts "rewrite this sentence": 3 + 2 grams, "explain gravity": 2 + 1. The
    # prompt's "gravity" is a feature of its own (4, not 3, in row b): a prompt never reads as an answer.
    assert (hashed[0].nnz, hashed[1].nnz) == (6, 4)


def test_recipe_combine_naming_a_missing_column_is_one_line(tmp_path: Path) -> None:
    from curate.recipes.recipe import load_recipe

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("score:\n  combine:\n    - {name: s, weights: {quality_probe: 1, nope: 1}}\n")
    with pytest.raises(CurateError, match=r"recipe.yaml: score.combine: .*'s' weights nope: no such probe column"):
        load_recipe(recipe)


def test_failed_checks_are_ranked_last_by_a_combined_score() -> None:
    rows = {"id": ["a", "b", "c", "d"], "source_id": ["0", "1", "2", "3"], "kind": ["instruction"] * 4}
    records = conform(
        pl.DataFrame(
            {
                **rows,
                "instruction": [
                    "What is 2 + 3?",
                    "What is 2 + 3?",
                    "Explain why the sky is blue.",
                    "Summarize the following article.",
                ],
                "input": ["", "", "", ""],
                "output": ["5", "6", "Blue.", "The article says that prices rose in the spring for three reasons."],
            }
        ).with_columns(text=pl.col("instruction"))
    )
    scalars, _ = signals(records)
    failed = failed_checks(signal_columns(records, scalars))
    # b: wrong arithmetic; c: a bare word where an explanation is asked for; d: names an article that is not there.
    assert failed.tolist() == [False, True, True, True]
    z = {"quality_probe": np.array([0.0, 3.0, 2.0, 1.0])}
    score = combined_score(z, {"quality_probe": 1.0}, np.array([1, 1, 1, 12]), exclude=failed)
    assert score[0] == 0.0 and np.isnan(score[1:]).all()


def test_choose_weights_under_the_median_guard_keeps_short_answers_a_floor_would_drop() -> None:
    # Judge a likes the short answers 0-1, judge b the long 2-3. A floor high enough for the pool's median drops
    # 0-1 and starves judge a; the median guard keeps one short answer of a top 3 ((3 - 1) // 2 = 1).
    words = np.array([2, 2, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30])
    a = np.array([3.0, 3.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    b = np.array([0.0, 0.0, 3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    ya = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    yb = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    logits, labels = {"a": a, "b": b}, {"a": ya, "b": yb}

    def guarded(order: np.ndarray, rows_words: np.ndarray, n: int) -> np.ndarray:
        return median_guarded(order, rows_words, n, 0.75)

    weights, floor = choose_weights_and_floor(logits, labels, 3 / 12, words, floors=(0, 3), pick=guarded)
    z = {k: (v - v.mean()) / v.std() for k, v in logits.items()}
    top, worst = top_and_worst_lift(z, weights, labels, 3 / 12, words, floor, None, guarded)
    assert worst > 0 and sorted(words[top].tolist()) == [2, 30, 30]
    _, floor = choose_weights_and_floor(logits, labels, 3 / 12, words, floors=(0, 3))
    assert floor == 3  # unguarded, only the floor keeps the median, and judge a gets nothing
