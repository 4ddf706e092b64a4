"""Heuristic text-quality rules for pretraining-style text: Gopher and C4.

``gopher_quality`` follows the quality and repetition rules of Gopher (Rae et al. 2021,
appendix A.1.1), with the thresholds from the paper, written from its description:

* words are whitespace-separated tokens with surrounding punctuation stripped; tokens without
  a letter or digit (``-``, ``#``, emoji) are symbols, not words, but do count as tokens for the
  fraction of tokens with a letter; lines are non-empty lines, paragraphs are blocks separated
  by blank lines, both stripped;
* a *duplicate* is a later copy of an earlier line, paragraph or n-gram; character fractions
  are of the characters in all lines, paragraphs or words, so they lie in [0, 1];
* the top n-gram fraction counts an n-gram only when it occurs at least twice (a text without
  any repeat is not repetitive, however short); overlapping occurrences count each word once;
* n-grams are compared case-insensitively.

``c4_quality`` is the page-level form of the C4 rules (Raffel et al. 2020): C4 drops pages with
"lorem ipsum" or a curly bracket, deletes lines without terminal punctuation, with fewer than
five words, mentioning JavaScript or a policy notice, and then drops pages left with fewer than
three sentences. This filter does not edit text: it measures what C4 would keep and rejects
the page where C4 would drop it.

Every measure is annotated for every record; a threshold of None switches its rule off.
"""

from __future__ import annotations

import operator
import re
import string
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from functools import partial
from itertools import compress
from typing import Literal

import polars as pl
from pydantic import Field

from curate.records.schema import ID
from curate.run.parallel import map_distinct
from curate.stages.filter import DETAIL, REJECT, Filter, FilterParams, first_failing
from curate.stages.registry import register

FieldName = Literal["instruction", "input", "output", "text"]

STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
BULLETS = ("•", "‣", "◦", "▪", "●", "○", "■", "□", "➢", "►", "-", "*", "–", "—")
ELLIPSES = ("...", "…")
_STRIP = string.punctuation + "…“”‘’«»–—¡¿•·"
_HAS_ALNUM = re.compile(r"[^\W_]")
_TOKEN_WITHOUT_LETTER = re.compile(r"(?<!\S)(?:[^\w\s]|[\d_])+(?!\S)")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n")
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)

C4_TERMINAL = (".", "!", "?", '"', "”")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
PARALLEL_MIN = 10_000
CHUNK_SIZE = 10_000
_SENTENCE_END = re.compile(r"[.!?]+[\"”’')\]]*(?=\s|$)")


def _words(text: str) -> tuple[list[str], list[str]]:
    """Whitespace tokens, and the words among them: punctuation stripped, tokens without a letter or digit dropped."""
    tokens = text.split()
    return tokens, [
        word for token in tokens if (word := token.strip(_STRIP)) and (word.isalnum() or _HAS_ALNUM.search(word))
    ]


def _lines(text: str) -> list[str]:
    return [line for line in (raw.strip() for raw in text.splitlines()) if line]


def _duplicate_fractions(items: list[str]) -> tuple[float, float]:
    """Fraction of items that repeat an earlier one, and the fraction of characters they hold."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    repeats = repeat_chars = 0
    for item in items:
        if item in seen:
            repeats += 1
            repeat_chars += len(item)
        else:
            seen.add(item)
    total_chars = sum(map(len, items))
    return repeats / len(items), (repeat_chars / total_chars if total_chars else 0.0)


def _covered_chars(lengths: list[int], starts: Iterable[int], n: int) -> int:
    """Characters of the words covered by n-grams starting at ``starts``, each word once."""
    covered = bytearray(len(lengths))
    ones = b"\x01" * n
    for start in starts:
        covered[start : start + n] = ones
    return sum(compress(lengths, covered))


def _ngram_fractions(words: list[str], lengths: list[int]) -> list[float]:
    """Top n-gram fractions (TOP_NGRAMS) then duplicate n-gram fractions (DUP_NGRAMS).

    An n-gram can only repeat where its (n-1)-gram does, so each n looks only at the starts
    whose shorter n-gram repeated, and the first n without any repeat ends the work (every
    larger n measures 0 too). Counter keeps first occurrences first, so a tie for the top
    n-gram goes to the one that appears first.
    """
    total = sum(lengths)
    fractions: list[float] = []
    n_grams = len(TOP_NGRAMS) + len(DUP_NGRAMS)
    starts: Iterable[int] = range(len(words))
    for n in (*TOP_NGRAMS, *DUP_NGRAMS):
        if n == TOP_NGRAMS[0]:
            grams = list(zip(*(words[i:] for i in range(n)), strict=False))
            starts = range(len(grams))
        else:
            starts = starts[: bisect_right(starts, len(words) - n)]
            grams = [tuple(words[i : i + n]) for i in starts]
        counts = Counter(grams)
        if not total or len(counts) == len(grams):
            break
        if n in TOP_NGRAMS:
            top, _ = counts.most_common(1)[0]
            covered = compress(starts, map(top.__eq__, grams))
        else:
            first_start = dict(zip(reversed(grams), reversed(starts), strict=True))
            covered = compress(starts, map(operator.ne, map(first_start.__getitem__, grams), starts))
        fractions.append(_covered_chars(lengths, covered, n) / total)
        starts = list(compress(starts, map((1).__lt__, map(counts.__getitem__, grams))))
    return fractions + [0.0] * (n_grams - len(fractions))


GOPHER_MEASURES: dict[str, pl.DataType] = {
    "gopher_word_count": pl.Int64(),
    "gopher_mean_word_length": pl.Float64(),
    "gopher_hash_ratio": pl.Float64(),
    "gopher_ellipsis_ratio": pl.Float64(),
    "gopher_ellipsis_lines": pl.Float64(),
    "gopher_bullet_lines": pl.Float64(),
    "gopher_stop_words": pl.Int64(),
    "gopher_alpha_words": pl.Float64(),
    "gopher_dup_lines": pl.Float64(),
    "gopher_dup_line_chars": pl.Float64(),
    "gopher_dup_paragraphs": pl.Float64(),
    "gopher_dup_paragraph_chars": pl.Float64(),
    **{f"gopher_top_{n}gram": pl.Float64() for n in TOP_NGRAMS},
    **{f"gopher_dup_{n}gram": pl.Float64() for n in DUP_NGRAMS},
}


def gopher_measures(text: str, stop_words: frozenset[str] = frozenset(STOP_WORDS)) -> tuple:
    """Every Gopher measure of one text, in the order of GOPHER_MEASURES; an empty text measures 0."""
    tokens, words = _words(text)
    n_words = len(words)
    lines = _lines(text)
    n_lines = len(lines) or 1
    paragraphs = [p for p in (raw.strip() for raw in _PARAGRAPH_BREAK.split(text)) if p]
    lowered = " ".join(words).lower().split()
    lengths = list(map(len, words))
    per_word = max(n_words, 1)
    dup_lines, dup_line_chars = _duplicate_fractions(lines)
    dup_paragraphs, dup_paragraph_chars = _duplicate_fractions(paragraphs)
    ngram_fractions = _ngram_fractions(lowered, lengths)
    return (
        n_words,
        sum(lengths) / n_words if n_words else 0.0,
        text.count("#") / per_word,
        (text.count("...") + text.count("…")) / per_word,
        sum(line.endswith(ELLIPSES) for line in lines) / n_lines,
        sum(line.startswith(BULLETS) for line in lines) / n_lines,
        len([word for word in lowered if word in stop_words]),
        1 - len(_TOKEN_WITHOUT_LETTER.findall(text)) / len(tokens) if tokens else 0.0,
        dup_lines,
        dup_line_chars,
        dup_paragraphs,
        dup_paragraph_chars,
        *ngram_fractions,
    )


C4_MEASURES: dict[str, pl.DataType] = {
    "c4_lorem_ipsum": pl.Boolean(),
    "c4_curly_bracket": pl.Int64(),
    "c4_javascript_lines": pl.Int64(),
    "c4_policy_lines": pl.Int64(),
    "c4_short_line_frac": pl.Float64(),
    "c4_terminal_punct_frac": pl.Float64(),
    "c4_sentences": pl.Int64(),
}


def c4_measures(text: str, min_words_per_line: int = 5) -> tuple:
    """Every C4 measure of one text, in the order of C4_MEASURES."""
    lines = _lines(text)
    n_lines = len(lines) or 1
    javascript = policy = short = terminal = sentences = 0
    for line in lines:
        lowered = line.lower()
        is_javascript = "javascript" in lowered
        is_policy = any(phrase in lowered for phrase in C4_POLICY)
        is_short = len(line.split()) < min_words_per_line
        is_terminal = line.endswith(C4_TERMINAL)
        javascript += is_javascript
        policy += is_policy
        short += is_short
        terminal += is_terminal
        if is_terminal and not (is_short or is_javascript or is_policy):
            sentences += max(1, len(_SENTENCE_END.findall(line)))
    return (
        "lorem ipsum" in text.lower(),
        text.count("{"),
        javascript,
        policy,
        short / n_lines,
        terminal / n_lines,
        sentences,
    )


def _measure(
    texts: list[str | None], measure: Callable[[str], tuple], schema: dict[str, pl.DataType], workers: int | None
) -> pl.DataFrame:
    """Measure each distinct text once, over a process pool when there are many.

    ``measure`` must be picklable (a module function or a ``functools.partial`` of one).
    """
    rows = map_distinct(measure, texts, workers, CHUNK_SIZE, PARALLEL_MIN, label="quality")
    return pl.DataFrame(rows, schema=schema, orient="row")


_FLOATS = {name for name, dtype in {**GOPHER_MEASURES, **C4_MEASURES}.items() if dtype == pl.Float64()}


def _bound_check(column: str, bound: float | None, above: bool, reason: str, label: str) -> list:
    """The check for one bound (none when the bound is None); the detail shows value and bound."""
    if bound is None:
        return []
    value = pl.col(column)
    failed = value > bound if above else value < bound
    sign = ">" if above else "<"
    shown = value.round(3) if column in _FLOATS else value
    return [(failed, reason, pl.format(f"{label} {{}} {sign} {bound}", shown))]


class GopherParams(FilterParams):
    """Gopher's thresholds (Rae et al. 2021); None switches a rule off.

    Attributes:
        field: the field to measure.
        workers: processes for large inputs; None means every core.
        min_words, max_words: word count range (``gopher_word_count``).
        min_mean_word_length, max_mean_word_length: mean word length in characters.
        max_symbol_ratio: ``#`` per word and ellipses (``...``, ``…``) per word (``gopher_symbol_ratio``).
        max_ellipsis_lines: fraction of lines ending in an ellipsis.
        max_bullet_lines: fraction of lines starting with a bullet.
        min_stop_words: occurrences of ``stop_words`` required (``gopher_stop_words``).
        min_alpha_words: fraction of tokens with at least one letter.
        max_dup_lines, max_dup_line_chars, max_dup_paragraphs, max_dup_paragraph_chars: repeated
            lines and paragraphs, by count and by characters.
        max_top_2gram, max_top_3gram, max_top_4gram: characters in the most frequent n-gram.
        max_dup_5gram ... max_dup_10gram: characters in repeated n-grams.
    """

    field: FieldName = "text"
    workers: int | None = Field(None, ge=1)
    min_words: int | None = 50
    max_words: int | None = 100_000
    min_mean_word_length: float | None = 3
    max_mean_word_length: float | None = 10
    max_symbol_ratio: float | None = 0.1
    max_ellipsis_lines: float | None = 0.3
    max_bullet_lines: float | None = 0.9
    min_stop_words: int | None = 2
    stop_words: list[str] = STOP_WORDS
    min_alpha_words: float | None = 0.8
    max_dup_lines: float | None = 0.30
    max_dup_line_chars: float | None = 0.20
    max_dup_paragraphs: float | None = 0.30
    max_dup_paragraph_chars: float | None = 0.20
    max_top_2gram: float | None = 0.20
    max_top_3gram: float | None = 0.18
    max_top_4gram: float | None = 0.16
    max_dup_5gram: float | None = 0.15
    max_dup_6gram: float | None = 0.14
    max_dup_7gram: float | None = 0.13
    max_dup_8gram: float | None = 0.12
    max_dup_9gram: float | None = 0.11
    max_dup_10gram: float | None = 0.10


@register("filter", "gopher_quality")
class GopherQuality(Filter):
    """Gopher quality and repetition rules (Rae et al. 2021): length, symbols, stop words, repeats."""

    Params = GopherParams

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        stop_words = frozenset(word.lower() for word in p.stop_words)
        measure = partial(gopher_measures, stop_words=stop_words)
        measures = _measure(records[p.field].to_list(), measure, GOPHER_MEASURES, p.workers)
        checks = [
            *_bound_check("gopher_word_count", p.min_words, False, "gopher_word_count", "words"),
            *_bound_check("gopher_word_count", p.max_words, True, "gopher_word_count", "words"),
            *_bound_check(
                "gopher_mean_word_length", p.min_mean_word_length, False, "gopher_mean_word_length", "mean word length"
            ),
            *_bound_check(
                "gopher_mean_word_length", p.max_mean_word_length, True, "gopher_mean_word_length", "mean word length"
            ),
            *_bound_check("gopher_hash_ratio", p.max_symbol_ratio, True, "gopher_symbol_ratio", "'#' per word"),
            *_bound_check(
                "gopher_ellipsis_ratio", p.max_symbol_ratio, True, "gopher_symbol_ratio", "ellipses per word"
            ),
            *_bound_check(
                "gopher_ellipsis_lines", p.max_ellipsis_lines, True, "gopher_ellipsis_lines", "lines ending in ellipsis"
            ),
            *_bound_check("gopher_bullet_lines", p.max_bullet_lines, True, "gopher_bullet_lines", "bullet lines"),
            *_bound_check("gopher_stop_words", p.min_stop_words, False, "gopher_stop_words", "stop words"),
            *_bound_check("gopher_alpha_words", p.min_alpha_words, False, "gopher_alpha_words", "words with a letter"),
            *_bound_check("gopher_dup_lines", p.max_dup_lines, True, "gopher_dup_lines", "duplicate lines"),
            *_bound_check(
                "gopher_dup_line_chars", p.max_dup_line_chars, True, "gopher_dup_line_chars", "duplicate line chars"
            ),
            *_bound_check(
                "gopher_dup_paragraphs", p.max_dup_paragraphs, True, "gopher_dup_paragraphs", "duplicate paragraphs"
            ),
            *_bound_check(
                "gopher_dup_paragraph_chars",
                p.max_dup_paragraph_chars,
                True,
                "gopher_dup_paragraph_chars",
                "duplicate paragraph chars",
            ),
        ]
        for n in TOP_NGRAMS:
            column = f"gopher_top_{n}gram"
            checks += _bound_check(column, getattr(p, f"max_top_{n}gram"), True, column, f"top {n}-gram chars")
        for n in DUP_NGRAMS:
            column = f"gopher_dup_{n}gram"
            checks += _bound_check(column, getattr(p, f"max_dup_{n}gram"), True, column, f"duplicate {n}-gram chars")
        return measures.with_columns(*first_failing(checks)).select(
            pl.Series(ID, records[ID]), *GOPHER_MEASURES, REJECT, DETAIL
        )


class C4Params(FilterParams):
    """C4's page rules (Raffel et al. 2020); None or False switches a rule off.

    Attributes:
        field: the field to measure.
        lorem_ipsum: reject pages containing "lorem ipsum" (``c4_lorem_ipsum``).
        curly_bracket: reject pages containing ``{``, C4's sign of code (``c4_curly_bracket``).
        javascript: reject pages with a line mentioning JavaScript (C4 deletes such lines).
        policy: reject pages with a cookie or privacy-policy line (C4 deletes such lines).
        min_words_per_line: lines with fewer words are short (C4 deletes them).
        max_short_line_frac: reject pages where more lines are short than this (``c4_short_lines``).
        min_terminal_punct_frac: reject pages where fewer lines end in ``.``, ``!``, ``?`` or a
            closing quote than this (``c4_terminal_punct``).
        min_sentences: sentences left in the lines C4 keeps; C4 drops pages with fewer than 3
            (``c4_too_few_sentences``).
    """

    field: FieldName = "text"
    lorem_ipsum: bool = True
    curly_bracket: bool = True
    javascript: bool = False
    policy: bool = False
    min_words_per_line: int = 5
    max_short_line_frac: float | None = None
    min_terminal_punct_frac: float | None = None
    min_sentences: int | None = 3


@register("filter", "c4_quality")
class C4Quality(Filter):
    """C4 page rules (Raffel et al. 2020): lorem ipsum, curly brackets, short and unpunctuated lines."""

    Params = C4Params

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        measures = _measure(
            records[p.field].to_list(),
            partial(c4_measures, min_words_per_line=p.min_words_per_line),
            C4_MEASURES,
            workers=1,
        )
        checks = []
        if p.lorem_ipsum:
            checks.append((pl.col("c4_lorem_ipsum"), "c4_lorem_ipsum", pl.lit('contains "lorem ipsum"')))
        if p.curly_bracket:
            checks.append(
                (
                    pl.col("c4_curly_bracket") > 0,
                    "c4_curly_bracket",
                    pl.format("{} curly brackets", pl.col("c4_curly_bracket")),
                )
            )
        if p.javascript:
            checks.append(
                (
                    pl.col("c4_javascript_lines") > 0,
                    "c4_javascript",
                    pl.format("{} lines mention javascript", pl.col("c4_javascript_lines")),
                )
            )
        if p.policy:
            checks.append(
                (
                    pl.col("c4_policy_lines") > 0,
                    "c4_policy",
                    pl.format("{} policy lines", pl.col("c4_policy_lines")),
                )
            )
        checks += _bound_check(
            "c4_short_line_frac",
            p.max_short_line_frac,
            True,
            "c4_short_lines",
            f"lines under {p.min_words_per_line} words",
        )
        checks += _bound_check(
            "c4_terminal_punct_frac", p.min_terminal_punct_frac, False, "c4_terminal_punct", "lines ending a sentence"
        )
        checks += _bound_check(
            "c4_sentences", p.min_sentences, False, "c4_too_few_sentences", "sentences in kept lines"
        )
        return measures.with_columns(*first_failing(checks)).select(
            pl.Series(ID, records[ID]), *C4_MEASURES, REJECT, DETAIL
        )
