"""Label-free quality signals of instruction records, and the text features the judge probes read.

Every signal is computed from the record alone (no model, no labels), so it means the same in
any pool and costs a few seconds for 52,000 records:

* ``response_words``-based informativeness enters the probes as a hinge basis of log length
  (``LENGTH_KNOTS``), so the probe learns the *shape* of the length effect (the accuracy judge
  likes short answers, the helpfulness judge long ones) instead of assuming one.
* ``instruction_complexity``: log2 of the prompt's words plus the constraints it states (commas,
  "and", numbers, "must", "at least", ...), Deita-style "how much does this ask for".
* ``coherence``: the cosine of the prompt's and the response's hashed word vectors (does the
  answer talk about what was asked).
* ``degenerate``: a bare number, a word or three, or a copy of the input, where the instruction
  asks for an explanation, a description or a text; or a response that repeats itself.
* ``repetition``: 1 - distinct words / words of the response.
* Verifiable-answer checks, annotation columns only (:mod:`scorers.verifiable`, ``VERIFIABLE``;
  +1 pass, -1 fail, 0 not applicable): ``refers_to_missing_input`` (the instruction names material,
  "the following text", that is nowhere), ``arithmetic_checked`` (the prompt's arithmetic, computed
  by a tiny parser, stated in the response or not), ``count_constraint`` ("list five ...", "in 50
  words": that many items or words), ``choice_constraint`` ("positive or negative": one of the
  options used), ``code_parses`` (Python asked for: :func:`ast.parse` accepts the answer),
  ``rewrite_copy`` (a rewrite that changes nothing). As probe scalars they did not raise the nested
  figures (docs/scoring.md), so the probes do not read them; a user can filter on them.

The probes' features (:func:`text_matrix`) are the response's word 1-2 grams and the prompt's
(instruction and input, marked ``q_`` so they never share a token with the response) hashed into
the same ``HASH_FEATURES`` binary dimensions, each block L2-normalized (stateless: no vocabulary or
IDF to ship), beside the standardized scalar signals above. The prompt's words let a probe learn
what kind of task a judge rates well (rewrite a sentence, explain a concept, classify ...), which
no response-only feature sees.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import polars as pl

from curate.records.schema import ID, INPUT, INSTRUCTION, OUTPUT
from scorers.verifiable import checks

HASH_FEATURES = 2**16
LENGTH_KNOTS = (0.7, 1.4, 2.1, 2.8, 3.5, 4.2, 4.9, 5.6)
ASKS_FOR_TEXT = re.compile(
    r"\b(explain|describe|why|how|discuss|write|essay|compose|generate|create|story|paragraph|elaborate|"
    r"compare|contrast|analy[sz]e|summar|outline|suggest|list|give|provide|design|develop|propose)",
    re.IGNORECASE,
)
CONSTRAINT = re.compile(
    r",|\band\b|\d+|\bmust\b|\bshould\b|\bexactly\b|\bat (least|most)\b|\bno more than\b|\bwithout\b|\bonly\b",
    re.IGNORECASE,
)
BARE = re.compile(r"[\s\d.,%$€£+\-/:x*=()]*")
WORD = re.compile(r"\w+")
PROMPT_WORD = re.compile(r"\b(\w+)\b")
VERIFIABLE = (
    "refers_to_missing_input",
    "arithmetic_checked",
    "count_constraint",
    "choice_constraint",
    "code_parses",
    "rewrite_copy",
)
SCALARS = (
    "log_words_instruction",
    "log_words_input",
    "log_words_output",
    "has_input",
    "instruction_complexity",
    "coherence",
    "degenerate",
    "repetition",
    "copy_of_input",
    "instruction_overlap",
    "lines",
    "list_items",
    "sentences",
    "ends_with_punctuation",
    "chars_per_word",
    *(f"log_words_output_over_{k}" for k in LENGTH_KNOTS),
)


def _hasher(ngrams: tuple[int, int]) -> Any:
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        n_features=HASH_FEATURES,
        ngram_range=ngrams,
        binary=True,
        norm="l2",
        alternate_sign=False,
        token_pattern=r"(?u)\b\w+\b",
        dtype=np.float64,
    )


def _columns(records: pl.DataFrame) -> tuple[list[str], list[str], list[str]]:
    return tuple(records[c].fill_null("").to_list() for c in (INSTRUCTION, INPUT, OUTPUT))  # type: ignore[return-value]


def _record_scalars(instruction: str, given: str, output: str) -> list[float]:
    out_words = WORD.findall(output.lower())
    ins_words = WORD.findall(instruction.lower())
    in_words = WORD.findall(given.lower())
    distinct = set(out_words)
    stripped = output.strip()
    bare = not stripped or len(out_words) <= 3 or bool(BARE.fullmatch(stripped))
    copied = len(distinct & set(in_words)) / max(1, len(distinct)) if in_words else 0.0
    repetition = 1.0 - len(distinct) / max(1, len(out_words))
    asks = bool(ASKS_FOR_TEXT.search(instruction))
    degenerate = (asks and (bare or (copied > 0.9 and len(out_words) < 15))) or (
        len(out_words) >= 20 and repetition > 0.7
    )
    return [
        float(np.log1p(len(ins_words))),
        float(np.log1p(len(in_words))),
        float(np.log1p(len(out_words))),
        float(bool(given.strip())),
        float(np.log2(1 + len(ins_words) + len(in_words)) + len(CONSTRAINT.findall(instruction))),
        0.0,  # coherence, filled in from the hashed vectors
        float(degenerate),
        repetition,
        copied,
        len(distinct & set(ins_words)) / max(1, len(set(ins_words))),
        float(np.log1p(output.count("\n"))),
        float(np.log1p(len(re.findall(r"(?m)^\s*(\d+[.)]|[-*•])", output)))),
        float(np.log1p(len(re.findall(r"[.!?](\s|$)", output)))),
        float(stripped[-1:] in ".!?") if stripped else 0.0,
        float(np.log1p(len(output)) - np.log1p(len(out_words) + 1)),
    ]


def signals(records: pl.DataFrame) -> tuple[np.ndarray, Any]:
    """(scalar signals in ``SCALARS`` order, hashed response and prompt word 1-2 grams as a sparse matrix)."""
    import scipy.sparse as sp

    instruction, given, output = _columns(records)
    if not records.height:
        return np.zeros((0, len(SCALARS))), sp.csr_matrix((0, HASH_FEATURES))
    base = np.array([_record_scalars(*row) for row in zip(instruction, given, output, strict=True)])
    prompts = [i if not g else f"{i}\n\n{g}" for i, g in zip(instruction, given, strict=True)]
    unigrams = _hasher((1, 1))
    base[:, SCALARS.index("coherence")] = np.asarray(
        unigrams.transform(prompts).multiply(unigrams.transform(output)).sum(axis=1)
    ).ravel()
    log_words = base[:, SCALARS.index("log_words_output")]
    hinges = np.maximum(0.0, log_words[:, None] - np.asarray(LENGTH_KNOTS)[None, :])
    ngrams = _hasher((1, 2))
    marked = [PROMPT_WORD.sub(r"q_\1", prompt) for prompt in prompts]
    hashed = ngrams.transform(output) + ngrams.transform(marked)
    return np.hstack([base, hinges]), hashed.tocsr()


def signal_columns(records: pl.DataFrame, scalars: np.ndarray) -> pl.DataFrame:
    """The label-free annotation columns: ``instruction_complexity``, ``coherence``, ``degenerate``,
    ``repetition`` and the verifiable-answer checks of ``VERIFIABLE`` (Int8: +1 pass, -1 fail, 0 not applicable)."""
    instruction, given, output = _columns(records)
    verdicts = np.array(
        [checks(*row, VERIFIABLE) for row in zip(instruction, given, output, strict=True)], dtype=np.int8
    ).reshape(records.height, len(VERIFIABLE))
    return pl.DataFrame(
        {
            ID: records[ID],
            "instruction_complexity": pl.Series(scalars[:, SCALARS.index("instruction_complexity")], dtype=pl.Float64),
            "coherence": pl.Series(scalars[:, SCALARS.index("coherence")], dtype=pl.Float64),
            "degenerate": pl.Series(scalars[:, SCALARS.index("degenerate")] > 0.5, dtype=pl.Boolean),
            "repetition": pl.Series(scalars[:, SCALARS.index("repetition")], dtype=pl.Float64),
            **{name: pl.Series(verdicts[:, k], dtype=pl.Int8) for k, name in enumerate(VERIFIABLE)},
        }
    )


# The value of each check's column that means the record fails it.
FAILED = {
    "refers_to_missing_input": 1,
    "arithmetic_checked": -1,
    "count_constraint": -1,
    "choice_constraint": -1,
    "code_parses": -1,
    "rewrite_copy": 1,
}


def failed_checks(annotations: pl.DataFrame) -> np.ndarray:
    """True where a record fails a label-free check (:func:`signal_columns`): a ``degenerate`` answer,
    an instruction that names missing input, a rewrite that changes nothing, or an arithmetic, count,
    choice or Python check that fails. A combined score with ``exclude_failed_checks`` ranks these last."""
    failed = annotations["degenerate"].fill_null(False).to_numpy().copy()
    for column, value in FAILED.items():
        failed |= (annotations[column] == value).fill_null(False).to_numpy()
    return failed


def text_matrix(scalars: np.ndarray, hashed: Any, mean: np.ndarray, scale: np.ndarray) -> Any:
    """The probes' design matrix: standardized scalar signals, then the hashed response and prompt n-grams."""
    import scipy.sparse as sp

    return sp.hstack([sp.csr_matrix((scalars - mean) / scale), hashed]).tocsr()
