"""Instruction hygiene: the cheap rules Self-Instruct used to drop tasks a text model cannot do.

Self-Instruct (Wang et al. 2022) filtered generated tasks that mention images, graphs, files
and the like (a text model cannot see or produce them), and tasks starting with punctuation
or non-English characters. To that come outputs that say nothing (``<noinput>``, ``N/A``)
and canned refusals. Text-kind records are not instructions: they pass unannotated.
"""

from __future__ import annotations

import re
import string
import unicodedata

import polars as pl
from pydantic import Field

from curate.records.schema import ID, INSTRUCTION, KIND, KIND_INSTRUCTION, OUTPUT
from curate.stages.filter import DETAIL, REJECT, Filter, FilterParams, first_failing
from curate.stages.registry import register

SELF_INSTRUCT_BLACKLIST = [
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
]
PLACEHOLDER_OUTPUTS = ["", "<noinput>", "N/A", "n/a", "None", "-"]
REFUSALS = [
    "As an AI language model",
    "As an AI assistant",
    "I'm sorry, but I cannot",
    "I cannot fulfill",
    "I am unable to",
]

LETTER, DIGIT, PUNCTUATION, NON_ASCII, OTHER, EMPTY = "letter", "digit", "punctuation", "non_ascii", "other", "empty"
_START_CHECK = "_start"
_START_WORDS = {DIGIT: "a digit", NON_ASCII: "a non-ASCII letter", OTHER: "a non-letter"}


class HygieneParams(FilterParams):
    """Each check is on by default; an empty list or ``False`` switches it off.

    Attributes:
        blacklist: words or phrases; an instruction containing one (whole words, any case) is
            rejected as ``blacklisted_keyword``. Default: Self-Instruct's list.
        placeholders: outputs that are no answer, compared after stripping whitespace; a null
            output counts as empty (``placeholder_output``).
        refusals: phrases (any case, straight or curly apostrophes) marking a refused task
            (``refusal_output``).
        refusal_window: search refusals only in the output's first this-many characters, where
            refusals sit; a long letter that says "I am unable to attend" halfway is no refusal.
            None searches the whole output.
        check_instruction_start: reject instructions starting with punctuation
            (``instruction_starts_with_punctuation``) or with anything else that is not a letter:
            nothing at all, emoji, symbols (``instruction_not_text``).
        allow_digit_start: digits count as text ("3 ways to ..."); Self-Instruct keeps them too.
        require_ascii_start: with the start check, also reject instructions starting with a
            non-ASCII letter, as Self-Instruct did for "non-English" tasks (``instruction_not_text``).
    """

    blacklist: list[str] = SELF_INSTRUCT_BLACKLIST
    placeholders: list[str] = PLACEHOLDER_OUTPUTS
    refusals: list[str] = REFUSALS
    refusal_window: int | None = Field(80, ge=1)
    check_instruction_start: bool = True
    allow_digit_start: bool = True
    require_ascii_start: bool = False


def _phrase_pattern(phrases: list[str]) -> str | None:
    """A case-insensitive alternation of whole-word phrases (spaces match any whitespace); None if all are blank."""
    parts = []
    for phrase in sorted({p.strip() for p in phrases if p.strip()}, key=lambda phrase: (-len(phrase), phrase)):
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        start = r"\b" if phrase[:1].isalnum() else ""
        end = r"\b" if phrase[-1:].isalnum() else ""
        parts.append(f"{start}{body}{end}")
    return "(?i)(" + "|".join(parts) + ")" if parts else None


def start_class(char: str, require_ascii: bool = False) -> str:
    """What an instruction's first non-space character is: letter, digit, punctuation, ..."""
    if not char:
        return EMPTY
    if char.isalpha():
        return NON_ASCII if require_ascii and not char.isascii() else LETTER
    category = unicodedata.category(char)
    if category.startswith("N"):
        return DIGIT
    if category.startswith("P") or char in string.punctuation:
        return PUNCTUATION
    return OTHER


@register("filter", "hygiene")
class Hygiene(Filter):
    """Self-Instruct keyword blacklist, bad instruction starts, placeholder and refusal outputs."""

    Params = HygieneParams

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        is_instruction = pl.col(KIND) == KIND_INSTRUCTION
        output = pl.col(OUTPUT)
        first_char = pl.col(INSTRUCTION).fill_null("").str.strip_chars_start().str.slice(0, 1)
        columns = [pl.when(is_instruction).then(first_char).alias("hygiene_first_char")]
        blacklist = _phrase_pattern(p.blacklist)
        if blacklist:
            keyword = pl.col(INSTRUCTION).str.extract(blacklist, 1).str.to_lowercase().str.replace_all(r"\s+", " ")
        else:
            keyword = pl.lit(None, dtype=pl.String)
        columns.append(pl.when(is_instruction).then(keyword).alias("hygiene_keyword"))
        if p.placeholders:
            placeholder = output.is_null() | output.str.strip_chars().is_in(p.placeholders)
        else:
            placeholder = pl.lit(False)
        columns.append(pl.when(is_instruction).then(placeholder).alias("hygiene_placeholder"))
        refusals = _phrase_pattern([phrase.replace("\u2019", "'") for phrase in p.refusals])
        if refusals:
            searched = output.str.replace_all("\u2019", "'", literal=True)
            if p.refusal_window is not None:
                searched = searched.str.slice(0, p.refusal_window)
            refusal = searched.str.extract(refusals, 1)
        else:
            refusal = pl.lit(None, dtype=pl.String)
        columns.append(pl.when(is_instruction).then(refusal).alias("hygiene_refusal"))
        frame = records.select(ID, KIND, OUTPUT, *columns)

        starts = frame["hygiene_first_char"].drop_nulls().unique().to_list()
        start_classes = {c: start_class(c, p.require_ascii_start) for c in starts}
        frame = frame.with_columns(
            pl.col("hygiene_first_char")
            .replace_strict(start_classes, default=None, return_dtype=pl.String)
            .alias(_START_CHECK)
        )

        start, first = pl.col(_START_CHECK), pl.col("hygiene_first_char")
        not_text = start.is_in([EMPTY, OTHER, NON_ASCII]) | ((start == DIGIT) & (not p.allow_digit_start))
        checks = []
        if p.check_instruction_start:
            checks.append(
                (
                    not_text,
                    "instruction_not_text",
                    pl.when(start == EMPTY)
                    .then(pl.lit("instruction is empty"))
                    .otherwise(
                        pl.format(
                            "instruction starts with {} '{}'",
                            start.replace_strict(_START_WORDS, default=start, return_dtype=pl.String),
                            first,
                        )
                    ),
                )
            )
        if p.check_instruction_start:
            checks.append(
                (
                    start == PUNCTUATION,
                    "instruction_starts_with_punctuation",
                    pl.format("instruction starts with '{}'", first),
                )
            )
        keyword_col, refusal_col = pl.col("hygiene_keyword"), pl.col("hygiene_refusal")
        checks.append(
            (keyword_col.is_not_null(), "blacklisted_keyword", pl.format('instruction contains "{}"', keyword_col))
        )
        checks.append(
            (
                pl.col("hygiene_placeholder").fill_null(False),
                "placeholder_output",
                pl.when(output.fill_null("").str.strip_chars() == "")
                .then(pl.lit("output is empty"))
                .otherwise(pl.format('output is "{}"', output.str.strip_chars())),
            )
        )
        checks.append((refusal_col.is_not_null(), "refusal_output", pl.format('output contains "{}"', refusal_col)))
        reject, detail = first_failing(checks)
        return frame.with_columns(
            pl.when(is_instruction).then(reject).alias(REJECT),
            pl.when(is_instruction).then(detail).alias(DETAIL),
        ).select(ID, "hygiene_keyword", "hygiene_placeholder", "hygiene_refusal", "hygiene_first_char", REJECT, DETAIL)
