"""The label-free verifiable-answer checks on hand-built records: each passes, fails or does not apply."""

from __future__ import annotations

from scorers.verifiable import (
    arithmetic_checked,
    choice_constraint,
    code_parses,
    count_constraint,
    evaluate,
    refers_to_missing_input,
    rewrite_copy,
)


def test_refers_to_missing_input_only_when_the_material_is_nowhere() -> None:
    assert refers_to_missing_input("Summarize the following article.", "") == 1.0
    assert refers_to_missing_input("Translate this sentence into French.", "") == 1.0
    assert refers_to_missing_input("Summarize the following article.", "Stocks rose on Monday after ...") == 0.0
    assert refers_to_missing_input('Translate this sentence into French: "I like tea."', "") == 0.0
    assert refers_to_missing_input("Is the following statement true? The sun is a star.", "") == 0.0
    assert refers_to_missing_input("Write a poem about autumn.", "") == 0.0


def test_arithmetic_parser_is_arithmetic_only() -> None:
    assert evaluate("2 + 3 * 4") == 14.0
    assert evaluate("(2 + 3) * 4") == 20.0
    assert evaluate("2^3^2") == 512.0
    assert evaluate("10 / 4 - 1") == 1.5
    assert evaluate("50% * 80") == 40.0
    assert evaluate("1,000 x 3") == 3000.0
    assert evaluate("4 / 0") is None
    assert evaluate("__import__('os') + 1") is None
    assert evaluate("2 +") is None
    assert evaluate("7") is None


def test_arithmetic_checked_right_wrong_and_not_applicable() -> None:
    assert arithmetic_checked("Calculate 8 + 5 * 2.", "", "The answer is 18.") == 1.0
    assert arithmetic_checked("Calculate 8 + 5 * 2.", "", "The answer is 26.") == -1.0
    assert arithmetic_checked("Calculate 8 + 5 * 2.", "", "It is a sum.") == -1.0
    assert arithmetic_checked("What is 15% of 200?", "", "15% of 200 is 30.") == 1.0
    assert arithmetic_checked("What is the product of 12 and 11?", "", "132") == 1.0
    assert arithmetic_checked("Find the average of these numbers.", "2, 3, 5, 8, 9", "The mean is 5.4.") == 1.0
    assert arithmetic_checked("Find the average of these numbers.", "2, 3, 5, 8, 9", "The mean is 5.6.") == -1.0
    assert arithmetic_checked("Summarize the book in 2-3 sentences.", "", "A story.") == 0.0
    assert arithmetic_checked("Describe the year 1990-2020 trend.", "", "It rose.") == 0.0


def test_count_constraint_items_words_and_sentences() -> None:
    three = "1. Apples\n2. Pears\n3. Plums"
    assert count_constraint("List three fruits.", "", three) == 1.0
    assert count_constraint("List five fruits.", "", three) == -1.0
    assert count_constraint("Name 2 oceans.", "", "The Atlantic and the Pacific.") == 1.0
    assert count_constraint("Name 2 oceans.", "", "The Atlantic, the Indian Ocean and the Pacific.") == -1.0
    assert (
        count_constraint("Describe a cat in 10 words.", "", "A small furry animal that purrs, hunts mice and sleeps.")
        == 1.0
    )
    assert count_constraint("Describe a cat in 10 words.", "", "Cat.") == -1.0
    assert count_constraint("Summarize it in 2-3 sentences.", "", "One. Two. Three.") == 1.0
    assert count_constraint("Summarize it in one sentence.", "", "One. Two. Three. Four. Five.") == -1.0
    assert count_constraint("Write a poem about rain.", "", "Rain falls.") == 0.0


def test_choice_constraint_uses_an_offered_option() -> None:
    assert choice_constraint("Classify the sentiment as positive or negative.", "I love it.", "Positive") == 1.0
    assert choice_constraint("Classify the sentiment as positive or negative.", "I love it.", "It is great.") == -1.0
    assert choice_constraint("Is this statement true or false?", "Fish fly.", "False.") == 1.0
    assert choice_constraint("Classify this animal as a mammal or a reptile.", "Lion", "Mammals.") == 1.0
    assert choice_constraint("Classify this animal as a mammal or a reptile.", "Lion", "A bird.") == -1.0
    assert choice_constraint("Write a question that requires a yes or no answer.", "", "Is it raining?") == 0.0
    assert choice_constraint("Output 1 for true and 0 for false.", "Water is wet.", "1") == 0.0
    assert choice_constraint("Describe a sunset.", "", "Red and orange.") == 0.0


def test_code_parses_python_only_and_never_runs_it() -> None:
    good = "def add(a, b):\n    return a + b"
    assert code_parses("Write a Python function that adds two numbers.", "", good) == 1.0
    assert code_parses("Write a Python function that adds two numbers.", "", f"Here:\n```python\n{good}\n```") == 1.0
    assert code_parses("Write a Python function that adds two numbers.", "", "def add(a, b)\n    return a + b") == -1.0
    assert code_parses("Write a Python function.", "", "import os\nos.remove('x'") == -1.0
    assert code_parses("Write a Java function that adds two numbers.", "", "def add(a, b)\n  return") == 0.0
    assert code_parses("Explain what Python is.", "", "A programming language.") == 0.0


def test_rewrite_copy_flags_a_rewrite_that_changes_nothing() -> None:
    assert (
        rewrite_copy("Rewrite this sentence in the passive voice.", "The cat ate the fish.", "The cat ate the fish.")
        == 1.0
    )
    assert (
        rewrite_copy(
            "Rewrite this sentence in the passive voice.", "The cat ate the fish.", "The fish was eaten by the cat."
        )
        == 0.0
    )
    assert rewrite_copy("Correct the grammar: She go to school.", "", "She go to school.") == 1.0
    assert rewrite_copy("Correct the grammar: She go to school.", "", "She goes to school.") == 0.0
    assert rewrite_copy("Convert this text to upper case.", "i am here", "I AM HERE") == 0.0
    assert rewrite_copy("Summarize this text.", "The cat ate the fish.", "The cat ate the fish.") == 0.0


def test_checks_are_annotation_columns_not_probe_features() -> None:
    import polars as pl

    from curate.records.schema import conform
    from scorers.signals import SCALARS, VERIFIABLE, signal_columns, signals

    rows = {
        "id": ["right", "wrong", "missing", "plain"],
        "source_id": ["0", "1", "2", "3"],
        "kind": ["instruction"] * 4,
        "instruction": ["What is 7 * 6?", "What is 7 * 6?", "Summarize the following article.", "Write a haiku."],
        "input": ["", "", "", ""],
        "output": ["7 * 6 = 42.", "7 * 6 = 48.", "The article says stocks rose.", "Snow on the pine."],
    }
    records = conform(pl.DataFrame(rows).with_columns(text=pl.col("instruction")))
    scalars, _ = signals(records)
    # Measured as probe scalars they did not raise the nested figures: the probes do not read them.
    assert not set(VERIFIABLE) & set(SCALARS)
    columns = signal_columns(records, scalars)
    assert columns["arithmetic_checked"].to_list() == [1, -1, 0, 0]
    assert columns["refers_to_missing_input"].to_list() == [0, 0, 1, 0]
    assert columns["count_constraint"].dtype == pl.Int8
