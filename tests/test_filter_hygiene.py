"""The hygiene filter: hand-built cases per rule, switches, bad input, real Alpaca and LIMA."""

from __future__ import annotations

import polars as pl
import pytest

from curate.errors import CurateError
from curate.records.schema import conform
from curate.stages.filter import run_filter
from curate.stages.registry import available, get
from filters.hygiene import SELF_INSTRUCT_BLACKLIST, Hygiene
from tests.conftest import ingested

LETTER = (
    "Dear Professor Smith,\n\nI am writing to ask for an extension on the essay due on Friday. "
    "Because of a family emergency, I am unable to finish it by then."
)

# name: (instruction, input, output, expected reason, expected detail)
CASES: dict[str, tuple[str | None, str, str | None, str | None, str | None]] = {
    "image": ("Describe the image below.", "", "A cat.", "blacklisted_keyword", 'instruction contains "image"'),
    "go to": ("Please GO   TO the website.", "", "Done.", "blacklisted_keyword", 'instruction contains "go to"'),
    "files": ("Write code that reads Files.", "", "open()", "blacklisted_keyword", 'instruction contains "files"'),
    "mapping": ("Explain mapping functions.", "", "They map.", None, None),
    "noinput": ("Summarize this.", "", "<noinput>", "placeholder_output", 'output is "<noinput>"'),
    "n/a": ("Summarize this.", "", " N/A\n", "placeholder_output", 'output is "N/A"'),
    "blank": ("Summarize this.", "", "  \n ", "placeholder_output", "output is empty"),
    "null output": ("Summarize this.", "", None, "placeholder_output", "output is empty"),
    "curly": (
        "Tell a joke.",
        "",
        "I\u2019m sorry, but I cannot.",
        "refusal_output",
        'output contains "I\'m sorry, but I cannot"',
    ),
    "ai model": (
        "What's the weather?",
        "",
        "As an AI language model, I can't.",
        "refusal_output",
        'output contains "As an AI language model"',
    ),
    "letter": ("Write a letter asking for an extension.", "", LETTER, None, None),
    "question mark": ("?What", "", "A question.", "instruction_starts_with_punctuation", "instruction starts with '?'"),
    "emoji": ("😀 Write a poem", "", "Roses.", "instruction_not_text", "instruction starts with a non-letter '😀'"),
    "empty": ("", "", "x", "instruction_not_text", "instruction is empty"),
    "spaces": ("   \n", "", "x", "instruction_not_text", "instruction is empty"),
    "null": (None, "", "x", "instruction_not_text", "instruction is empty"),
    "digit": ("3 ways to relax", "", "Breathe.", None, None),
    "german": ("Übersetze den Satz.", "", "Translate.", None, None),
    "order": ("?Draw a picture", "", "", "instruction_starts_with_punctuation", "instruction starts with '?'"),
    "clean": ("Write a haiku about autumn.", "", "Leaves fall slowly.", None, None),
}


def records_of(cases: dict[str, tuple]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "id": list(cases),
            "kind": ["instruction"] * len(cases),
            "instruction": [c[0] for c in cases.values()],
            "input": [c[1] for c in cases.values()],
            "output": [c[2] for c in cases.values()],
        },
        schema={"id": pl.String, "kind": pl.String, "instruction": pl.String, "input": pl.String, "output": pl.String},
    )
    return conform(frame)


def decisions(records: pl.DataFrame, stage: Hygiene) -> dict[str, tuple[str | None, str | None]]:
    decided = stage.apply(records)
    return {row[0]: (row[1], row[2]) for row in decided.select("id", "reject", "detail").rows()}


def test_reasons_and_details() -> None:
    records = records_of(CASES)
    result = run_filter(records, Hygiene())
    result.check()
    got = decisions(records, Hygiene())
    assert got == {name: (case[3], case[4]) for name, case in CASES.items()}
    annotations = {row["id"]: row for row in result.annotations.iter_rows(named=True)}
    assert annotations["go to"]["hygiene_keyword"] == "go to"
    assert annotations["mapping"]["hygiene_keyword"] is None
    assert annotations["blank"]["hygiene_placeholder"] is True and annotations["clean"]["hygiene_placeholder"] is False
    assert annotations["curly"]["hygiene_refusal"] == "I'm sorry, but I cannot"
    assert annotations["letter"]["hygiene_refusal"] is None
    assert annotations["emoji"]["hygiene_first_char"] == "😀" and annotations["null"]["hygiene_first_char"] == ""
    assert annotations["order"]["hygiene_keyword"] == "draw"  # measured even when an earlier rule rejects


def test_switches_and_custom_lists() -> None:
    records = records_of(CASES)
    assert decisions(records, Hygiene(refusal_window=None))["letter"] == (
        "refusal_output",
        'output contains "I am unable to"',
    )
    digits_off = decisions(records, Hygiene(allow_digit_start=False))
    assert digits_off["digit"] == ("instruction_not_text", "instruction starts with a digit '3'")
    ascii_only = decisions(records, Hygiene(require_ascii_start=True))
    assert ascii_only["german"] == ("instruction_not_text", "instruction starts with a non-ASCII letter 'Ü'")
    nothing = Hygiene(blacklist=[], placeholders=[], refusals=[], check_instruction_start=False)
    assert all(reason is None for reason, _ in decisions(records, nothing).values())
    blank_phrases = Hygiene(blacklist=["", "  "], refusals=[" "], placeholders=[], check_instruction_start=False)
    assert decisions(records, blank_phrases) == decisions(records, nothing)
    custom = decisions(
        records_of({"c": ("Plot a chart of sales.", "", "ok", None, None)}), Hygiene(blacklist=["chart"])
    )
    assert custom == {"c": ("blacklisted_keyword", 'instruction contains "chart"')}
    placeholders = decisions(records, Hygiene(placeholders=["Done."]))
    assert placeholders["go to"][0] == "blacklisted_keyword" and placeholders["blank"] == (None, None)


def test_text_records_pass_unannotated_and_bad_input() -> None:
    frame = pl.DataFrame({"id": ["t", "huge", "emoji"], "kind": ["text", "instruction", "instruction"]})
    frame = frame.with_columns(
        pl.Series("text", ["Draw a picture? <noinput>", None, None]),
        pl.Series("instruction", [None, "Explain " + "the weather today. " * 60_000, "🎉🎉🎉"]),
        pl.Series("output", [None, "ok " * 100_000, "🎉"]),
        pl.Series("input", [None, "", ""]),
    )
    records = conform(frame)
    result = run_filter(records, Hygiene())
    result.check()
    row = result.annotations.row(0, named=True)
    assert row["hygiene_keyword"] is None and row["hygiene_placeholder"] is None and row["reject"] is None
    assert result.kept["id"].to_list() == ["t", "huge"]
    assert result.rejects["detail"].to_list() == ["instruction starts with a non-letter '🎉'"]
    assert Hygiene().apply(conform(pl.DataFrame({"id": []}, schema={"id": pl.String}))).height == 0


def test_deterministic() -> None:
    records = records_of(CASES)
    assert Hygiene().apply(records).equals(Hygiene().apply(records))


def test_alpaca_and_lima(data_dir: object) -> None:
    alpaca = run_filter(ingested("alpaca"), Hygiene())
    alpaca.check()
    # Alpaca's generator already applied Self-Instruct's blacklist, so no keyword hits remain.
    assert alpaca.record()["rejected_by_reason"] == {"placeholder_output": 53, "refusal_output": 1}
    assert alpaca.annotations.height == 52002 and alpaca.annotations["hygiene_keyword"].null_count() == 52002
    details = set(alpaca.rejects.filter(pl.col("reason") == "placeholder_output")["detail"])
    assert details == {"output is empty", 'output is "<noinput>"', 'output is "N/A"'}

    lima = ingested("lima")  # chats: instruction and output are the first turn
    result = run_filter(lima, Hygiene())
    result.check()
    assert result.record()["rejected_by_reason"] == {
        "blacklisted_keyword": 69,
        "instruction_starts_with_punctuation": 6,
        "refusal_output": 2,
    }
    refusals = result.rejects.filter(pl.col("reason") == "refusal_output")
    assert set(refusals["detail"]) == {'output contains "as an AI assistant"', 'output contains "As an AI assistant"'}
    keywords = set(result.annotations["hygiene_keyword"].drop_nulls())
    assert keywords <= set(SELF_INSTRUCT_BLACKLIST) and {"image", "file", "video"} <= keywords


def test_registry_params_and_listing() -> None:
    assert "hygiene" in available("filter") and get("filter", "hygiene") is Hygiene
    assert Hygiene.__doc__ and len(Hygiene.__doc__.strip().splitlines()) == 1
    with pytest.raises(CurateError, match="refusal_window"):
        Hygiene(refusal_window=0)
    with pytest.raises(CurateError, match="blacklists"):
        Hygiene(blacklists=["x"])
