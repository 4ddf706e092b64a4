"""Selection strategies on hand-built cases with known answers, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import conform
from curate.selection.strategies import SelectParams, needs_vectors, quotas, seeded_order, select
from tests.conftest import run_cli


def records(outputs: list[str]) -> pl.DataFrame:
    ids = [f"r{i}" for i in range(len(outputs))]
    return conform(
        pl.DataFrame(
            {
                "id": ids,
                "kind": ["instruction"] * len(outputs),
                "instruction": ["Do it."] * len(outputs),
                "input": [""] * len(outputs),
                "output": outputs,
                "text": outputs,
            }
        )
    )


SCORES = pl.DataFrame({"id": ["r0", "r1", "r2", "r3", "r4"], "quality": [0.2, 0.9, 0.5, 0.9, None]})


def test_threshold_and_top_k_with_deterministic_ties() -> None:
    frame = records(["a", "b", "c", "d", "e"])
    chosen = select(frame, SelectParams("threshold", by="quality", min=0.5), SCORES)
    chosen.check()
    assert chosen.kept["id"].to_list() == ["r1", "r2", "r3"]
    top = select(frame, SelectParams("top_k", n=2, by="quality"), SCORES)
    assert top.kept["id"].to_list() == ["r1", "r3"]  # the tie at 0.9 breaks by id; kept rows stay in input order
    assert top.annotations["select_rank"].to_list() == [4, 1, 3, 2, 5]  # the null score ranks last
    assert set(top.rejects["reason"]) == {"not_selected"} and top.rejects.height == 3


def test_random_is_seeded_and_stable() -> None:
    frame = records([str(i) for i in range(50)])
    first = select(frame, SelectParams("random", n=10, seed=3))
    again = select(frame, SelectParams("random", n=10, seed=3))
    other = select(frame, SelectParams("random", n=10, seed=4))
    assert first.kept["id"].to_list() == again.kept["id"].to_list() != other.kept["id"].to_list()
    assert seeded_order(pl.Series(["x", "y", "z"]), 0).tolist() == [1, 2, 0]  # pinned: same on every machine


def test_longest_by_response_words() -> None:
    frame = records(["one", "one two three", "one two", "", "one two three four"])
    assert select(frame, SelectParams("longest", n=2)).kept["id"].to_list() == ["r1", "r4"]


def test_diverse_skips_near_copies_of_chosen() -> None:
    frame = records(["a", "b", "c", "d", "e"])
    vectors = np.array([[1, 0], [1, 0.01], [0, 1], [0.70710678, 0.70710678], [1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = pl.DataFrame({"id": ["r0", "r1", "r2", "r3", "r4"], "q": [0.9, 1.0, 0.1, 0.5, 0.8]})
    result = select(frame, SelectParams("diverse", n=3, by="q", max_cosine=0.9), scores, vectors)
    # r1 (best) first; r0 and r4 are copies of it; then r3 (cosine 0.71 < 0.9), then r2.
    assert result.kept["id"].to_list() == ["r1", "r2", "r3"]


def test_kcenter_spreads_over_the_space_leaning_to_quality() -> None:
    frame = records(["a", "b", "c", "d"])
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1], [-1, 0]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = pl.DataFrame({"id": ["r0", "r1", "r2", "r3"], "q": [0.9, 0.8, 0.1, 0.5]})
    result = select(frame, SelectParams("kcenter", n=3, by="q"), scores, vectors)
    # r0 (best) first; then gain q * (1 - cos): r3 = 0.5 * 2 beats r2 = 0.25 * 1 and r1 = 0.75 * 0.01;
    # then r2 (0.25 * 1) beats r1, which sits next to r0.
    assert result.kept["id"].to_list() == ["r0", "r2", "r3"]
    assert result.stats["selected"] == 3 and "mean_pairwise_cosine" in result.stats
    again = select(frame, SelectParams("kcenter", n=3, by="q"), scores, vectors)
    assert again.annotations.equals(result.annotations)


def test_quotas_proportional_and_equal() -> None:
    groups = pl.Series("source", ["a"] * 6 + ["b"] * 3 + ["c"])
    assert quotas(groups, 5, "proportional") == {"a": 3, "b": 2, "c": 0}  # remainders 0.5 tie: b before c
    assert quotas(groups, 5, "equal") == {"a": 2, "b": 2, "c": 1}
    assert quotas(groups, 9, "equal") == {"a": 5, "b": 3, "c": 1}  # c and b are full; a takes the rest
    assert quotas(groups, 50, "proportional") == {"a": 6, "b": 3, "c": 1}


def test_stratified_top_k_fills_each_quota_with_its_best() -> None:
    frame = records([str(i) for i in range(6)]).with_columns(source=pl.Series(["x", "x", "x", "x", "y", "y"]))
    scores = pl.DataFrame({"id": [f"r{i}" for i in range(6)], "q": [0.9, 0.8, 0.7, 0.6, 0.1, 0.2]})
    result = select(frame, SelectParams("top_k", n=3, by="q", stratify="source", quota="equal"), scores)
    assert result.kept["id"].to_list() == ["r0", "r1", "r5"]  # y's best is r5 although every x scores higher
    assert result.stats["quotas"] == {"x": 2, "y": 1}
    result.check()
    with pytest.raises(CurateError, match="cannot stratify by 'nope'"):
        select(frame, SelectParams("random", n=2, stratify="nope"))


def test_bad_parameters() -> None:
    with pytest.raises(CurateError, match="needs --by COLUMN and --min"):
        SelectParams("threshold", by="q")
    with pytest.raises(CurateError, match="needs --n"):
        SelectParams("random")
    with pytest.raises(CurateError, match="no score column 'nope'"):
        select(records(["a"]), SelectParams("top_k", n=1, by="nope"), SCORES)
    with pytest.raises(CurateError, match="needs an embedding"):
        select(records(["a"]), SelectParams("diverse", n=1, by="quality"), SCORES)


def test_cli_select_random_and_longest(tmp_path: Path, data_dir: Path) -> None:
    base = tmp_path / "seeds"
    run_cli("ingest", "alpaca-seed-tasks", "--out", str(base))
    out = tmp_path / "random"
    run_cli("select", str(base), "--strategy", "random", "--n", "50", "--seed", "1", "--out", str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"][-1]["kept"] == 50 and manifest["stages"][-1]["rejected"] == 125
    assert (out / "README.md").exists()
    again = tmp_path / "random2"
    run_cli("select", str(base), "--strategy", "random", "--n", "50", "--seed", "1", "--out", str(again))
    assert json.loads((again / "manifest.json").read_text())["outputs"]["data"] == manifest["outputs"]["data"]
    longest = tmp_path / "longest"
    run_cli("select", str(base), "--strategy", "longest", "--n", "10", "--out", str(longest))
    kept = pl.read_parquet(longest / "data")
    assert kept.height == 10


def test_degenerate_selection_is_warned_about() -> None:
    # The pool's median response is 6 words; a score that prefers one-word answers picks a median of 1.
    outputs = ["yes", "no", "7", "one two three four five six", "a b c d e f g h", "a b c d e f", "x y z w v u"]
    frame = records(outputs)
    brevity = pl.DataFrame({"id": frame["id"], "s": [1.0, 0.9, 0.8, 0.1, 0.1, 0.1, 0.1]})
    short = select(frame, SelectParams("top_k", n=3, by="s"), brevity)
    assert short.stats["warning"].startswith("degenerate selection: median response 1 words, under half")
    assert short.stats["report"]["warning"] == short.stats["warning"]
    long = select(frame, SelectParams("top_k", n=3, by="s"), brevity.with_columns(-pl.col("s")))
    assert "warning" not in long.stats and "warning" not in long.stats["report"]


def test_median_guard_keeps_the_best_short_answers_and_the_median() -> None:
    # The pool's median response is 6 words; the score likes the one-word answers best. Unguarded, the top 5
    # is four one-word answers (median 1). Guarded at 0.5 (answers under 3 words at most (5 - 1) // 2 = 2),
    # the two best short answers stay and the three best long ones fill the rest, in score order.
    outputs = ["yes", "no", "7", "maybe", "a b c d e f", "a b c d e f g", "a b c d e f g h", "a b c d e f g h i j"]
    frame = records(outputs)
    brevity = pl.DataFrame({"id": frame["id"], "s": [1.0, 0.9, 0.8, 0.7, 0.4, 0.3, 0.2, 0.1]})
    plain = select(frame, SelectParams("top_k", n=5, by="s"), brevity)
    assert plain.kept["id"].to_list() == ["r0", "r1", "r2", "r3", "r4"]
    guarded = select(frame, SelectParams("top_k", n=5, by="s", min_median_ratio=0.5), brevity)
    guarded.check()
    assert guarded.kept["id"].to_list() == ["r0", "r1", "r4", "r5", "r6"]
    assert guarded.stats["report"]["response_words"]["selected"]["p50"] >= 0.5 * 6
    details = dict(zip(guarded.rejects["id"].to_list(), guarded.rejects["detail"].to_list(), strict=True))
    assert details["r2"] == "rank 3 under top_k, passed over by the median guard"
    assert details["r7"] == "rank 8 under top_k"
    # n 7: three short answers at most, the fourth (r3) passed over though the long ones run out exactly.
    capped = select(frame, SelectParams("top_k", n=7, by="s", min_median_ratio=0.5), brevity)
    assert capped.kept.height == 7 and "r3" not in capped.kept["id"].to_list()
    # n 8: when the long answers run out, the best passed-over short ones fill the count.
    few_long = select(frame, SelectParams("top_k", n=8, by="s", min_median_ratio=0.5), brevity)
    assert few_long.kept.height == 8 and "r3" in few_long.kept["id"].to_list()
    with pytest.raises(CurateError, match=r"--min-median-ratio \(a fraction in \(0, 1\]\) is for --strategy top_k"):
        SelectParams("random", n=2, min_median_ratio=0.5)
    with pytest.raises(CurateError, match="--min-median-ratio"):
        SelectParams("top_k", n=2, by="s", min_median_ratio=1.5)


def test_kcenter_among_candidates_needs_only_their_vectors() -> None:
    frame = records(["a", "b", "c", "d", "e", "f"])
    scores = pl.DataFrame({"id": frame["id"], "s": [0.9, 0.8, 0.7, 0.6, 0.1, 0.2]})
    params = SelectParams("kcenter", n=2, by="s", candidates=3)
    assert needs_vectors(frame, params, scores).tolist() == [0, 1, 2]
    vectors = np.zeros((6, 2), dtype=np.float32)
    vectors[[0, 1, 2]] = [[1, 0], [1, 0], [0, 1]]  # r1 duplicates r0; r2 is far away
    chosen = select(frame, params, scores, vectors=vectors)
    assert chosen.kept["id"].to_list() == ["r0", "r2"]
    with pytest.raises(CurateError, match="--candidates"):
        SelectParams("top_k", n=2, by="s", candidates=3)


def test_report_per_judge_with_lift() -> None:
    frame = records(["a b", "c d", "e f", "g h"])
    scores = pl.DataFrame({"id": frame["id"], "s": [4.0, 3.0, 2.0, 1.0]})
    judges = {
        "accuracy": pl.DataFrame({"id": frame["id"], "label": [True, False, False, False]}),
        "helpfulness": pl.DataFrame({"id": frame["id"], "label": [False, True, True, False]}),
    }
    report = select(frame, SelectParams("top_k", n=2, by="s"), scores, labels=judges).stats["report"]
    assert report["judges"]["accuracy"]["lift"] == 2.0 and report["judges"]["helpfulness"]["lift"] == 1.0
    assert report["judge"] == report["judges"]["accuracy"]
