"""Language filter: langdetect on one field, seeded so the same text always gets the same answer.

langdetect samples n-grams at random; with ``DetectorFactory.seed = 0`` every detector
reseeds its own generator before each text, so a result depends only on the text, never on
the order, the process or the chunk it was detected in. That makes the process pool safe:
single- and multi-process runs give identical annotations.

Texts with too few letters to judge are annotated ``und`` and never guessed: langdetect
answers *something* for "ok thx", and that guess would reject short records at random.
"""

from __future__ import annotations

import re
import threading
from functools import partial
from typing import Literal

import polars as pl
from langdetect import DetectorFactory, detect_langs
from langdetect.detector_factory import init_factory
from langdetect.lang_detect_exception import LangDetectException
from pydantic import Field

from curate.records.schema import ID
from curate.run.parallel import map_distinct
from curate.stages.filter import DETAIL, REJECT, Filter, FilterParams, first_failing
from curate.stages.registry import register

DetectorFactory.seed = 0

UNDETERMINED = "und"
OK, TOO_SHORT, NO_LETTERS, ERROR = "ok", "too_short", "no_letters", "error"
CHUNK_SIZE = 2000
# langdetect drops URLs and e-mail addresses before detecting, so their letters do not count.
_NOT_PROSE = re.compile(r"https?://\S+|www\.\S+|[-_.0-9A-Za-z]+@[-_.0-9A-Za-z]+")


class LanguageParams(FilterParams):
    """Which languages to keep and how sure the detector must be.

    Attributes:
        field: the field to detect (``text`` is instruction+input+output for instruction records).
        keep: ISO codes to keep (``en``, ``zh-cn``; ``zh`` keeps every ``zh-*``); None keeps all.
        min_prob: reject detections less probable than this (``language_low_confidence``).
        min_chars: fewer letters than this (outside URLs and e-mail addresses) is too short to judge.
        reject_undetermined: reject texts that are too short, have no letters or fail detection.
        workers: processes for large inputs; None means every core.
    """

    field: Literal["instruction", "input", "output", "text"] = "text"
    keep: list[str] | None = None
    min_prob: float = Field(0.0, ge=0.0, le=1.0)
    min_chars: int = Field(20, ge=0)
    reject_undetermined: bool = False
    workers: int | None = Field(None, ge=1)


def _detect_one(text: str, min_chars: int) -> tuple[str, float, str]:
    letters = sum(ch.isalpha() for ch in _NOT_PROSE.sub(" ", text))
    if letters == 0:
        return UNDETERMINED, 0.0, NO_LETTERS
    if letters < min_chars:
        return UNDETERMINED, 0.0, TOO_SHORT
    try:
        ranked = detect_langs(text)
    except LangDetectException:
        return UNDETERMINED, 0.0, ERROR
    if not ranked:
        return UNDETERMINED, 0.0, ERROR
    return ranked[0].lang, float(ranked[0].prob), OK


_PROFILES = threading.Lock()


def _load_profiles() -> None:
    """Load langdetect's profiles once, under a lock: its lazy loader publishes the factory before
    the profiles are in, so a second thread (shards filtered side by side) would detect with
    only some languages loaded and get different answers."""
    with _PROFILES:
        init_factory()


def detect_languages(
    texts: list[str | None], workers: int | None = None, min_chars: int = 20, *, chunk_size: int = CHUNK_SIZE
) -> tuple[list[str], list[float], list[str]]:
    """Language code, probability and status per text; a process pool when there are many.

    Identical texts are detected once. Below ``chunk_size`` distinct texts (or with one worker)
    everything runs here, since starting spawned workers costs about a second. Workers are
    spawned, not forked (polars is not fork-safe); a pool that breaks (a script without an
    ``if __name__ == "__main__"`` guard) falls back to detecting here, with a warning.
    """
    _load_profiles()
    rows = map_distinct(
        partial(_detect_one, min_chars=min_chars),
        texts,
        workers,
        chunk_size,
        min_parallel=chunk_size + 1,
        label="language",
    )
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


@register("filter", "language")
class Language(Filter):
    """Detected language (langdetect, seeded) with an optional keep-list and confidence floor."""

    Params = LanguageParams

    def apply(self, records: pl.DataFrame) -> pl.DataFrame:
        p = self.params
        languages, probs, statuses = detect_languages(records[p.field].to_list(), p.workers, p.min_chars)
        frame = pl.DataFrame(
            {
                ID: records[ID],
                "language": pl.Series(languages, dtype=pl.String),
                "language_prob": pl.Series(probs, dtype=pl.Float64),
                "language_status": pl.Series(statuses, dtype=pl.String),
                "_prob_text": pl.Series([f"{prob:.2f}" for prob in probs], dtype=pl.String),
            }
        )
        language, prob, status = pl.col("language"), pl.col("language_prob"), pl.col("language_status")
        detected = status == OK
        checks = []
        if p.reject_undetermined:
            checks.append(
                (~detected, "language_undetermined", pl.format("language undetermined ({})", status)),
            )
        if p.keep is not None:
            codes = [code.lower() for code in p.keep]
            kept = language.is_in(codes) | language.str.split("-").list.first().is_in(codes)
            keep_list = ", ".join(p.keep) or "(empty)"
            checks.append(
                (
                    detected & ~kept,
                    "language",
                    pl.format(f"detected {{}} (p={{}}), keep-list {keep_list}", language, pl.col("_prob_text")),
                )
            )
        if p.min_prob > 0:
            checks.append(
                (
                    detected & (prob < p.min_prob),
                    "language_low_confidence",
                    pl.format(f"detected {{}} (p={{}}) < min_prob {p.min_prob}", language, pl.col("_prob_text")),
                )
            )
        return frame.with_columns(*first_failing(checks)).select(
            ID, "language", "language_prob", "language_status", REJECT, DETAIL
        )
