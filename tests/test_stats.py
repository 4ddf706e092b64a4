"""Seed statistics on constructed cases whose means and intervals are known."""

from __future__ import annotations

import math

import pytest

from curate.training.stats import mean_ci, paired_difference

T_975_2 = 4.302652729911275  # Student t, 97.5th percentile, 2 degrees of freedom


def test_mean_and_t_interval() -> None:
    s = mean_ci([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["sd"] == pytest.approx(1.0)
    half = T_975_2 / math.sqrt(3)
    assert s["half_width"] == pytest.approx(half)
    assert (s["low"], s["high"]) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    assert mean_ci([5.0, 5.0])["half_width"] == 0.0
    one = mean_ci([4.0])
    assert one["mean"] == 4.0 and one["low"] is None and one["high"] is None
    assert mean_ci([])["mean"] is None


def test_t_interval_tends_to_the_normal_one() -> None:
    values = [(-1.0) ** i for i in range(10_000)]  # mean 0, sd ~1
    s = mean_ci(values)
    assert s["half_width"] == pytest.approx(1.96 / 100, rel=2e-3)


def test_paired_difference_uses_common_seeds() -> None:
    arm = {0: 2.0, 1: 3.0, 2: 4.0, 7: 9.0}
    control = {0: 1.5, 1: 2.0, 2: 3.5}
    d = paired_difference(arm, control)
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(2 / 3)
    sd = math.sqrt(((0.5 - 2 / 3) ** 2 * 2 + (1 / 3) ** 2) / 2)
    assert d["sd"] == pytest.approx(sd)
    assert d["half_width"] == pytest.approx(T_975_2 * sd / math.sqrt(3))


def test_pairwise_outcomes_with_position_swap() -> None:
    from curate.training.pairwise import combine, pairwise, parse_verdict

    assert [parse_verdict(r) for r in ("Answer 1", "answer 2.", "Tie", "I cannot say", None)] == [1, 2, 0, None, None]
    assert combine(1, 2) == "win" and combine(2, 1) == "loss" and combine(1, 1) == "tie" and combine(1, 0) == "win"

    def judge_preferring_longer_then_first(requests: list[list[dict[str, str]]]) -> list[str]:
        """A stand-in for the external judge: the longer answer, ties go to position 1 (a position bias)."""
        replies = []
        for messages in requests:
            text = messages[-1]["content"]
            first = text.split("Answer 1:\n")[1].split("\n\nAnswer 2:")[0]
            second = text.split("Answer 2:\n")[1].split("\n\nWhich")[0]
            replies.append("Answer 2" if len(second) > len(first) else "Answer 1")
        return replies

    result = pairwise(
        ["q1", "q2", "q3"],
        ["long answer", "x", "same"],
        ["short", "longer one", "same"],
        judge_preferring_longer_then_first,
    )
    assert (result["win"], result["loss"], result["tie"]) == (1, 1, 1)
    assert result["outcomes"] == ["win", "loss", "tie"] and result["win_rate"] == pytest.approx(1 / 3, abs=1e-4)
