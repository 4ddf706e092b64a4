"""ROUGE-L F-measure on word tokens, vectorized: equal to ``rouge_score`` and far faster.

``rouge_score`` (``RougeScorer(["rougeL"])``, no stemmer) lower-cases, keeps runs of
``[a-z0-9]`` as tokens, takes the longest common subsequence (LCS) of the two token lists in pure
Python and returns ``F = 2PR / (P + R)`` with ``P = lcs / len(prediction)`` and
``R = lcs / len(target)``. Here every distinct token becomes one Unicode code point, so a token
list is a short string, and rapidfuzz's bit-parallel ``LCSseq`` computes the LCS of all pairs
with ``process.cdist`` on all cores. The F-measure is then computed with the same float
operations in the same order, so the scores are bit-identical, not merely close.
"""

from __future__ import annotations

import numpy as np

from curate.errors import CurateError

_SURROGATES = 0xD800
_SURROGATE_SPAN = 0x800
_MAX_TOKENS = 0x10FFFF - _SURROGATE_SPAN


def rouge_tokens(text: str) -> list[str]:
    """``rouge_score``'s own tokenizer (no stemming), so the tokens are exactly its tokens."""
    from rouge_score.tokenize import tokenize

    return tokenize(text or "", None)


class TokenCodes:
    """Maps each distinct word to one code point and a token list to the string of its code points."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}

    def _code(self, token: str) -> str:
        code = self.codes.get(token)
        if code is None:
            n = len(self.codes)
            if n >= _MAX_TOKENS:
                raise CurateError(f"more than {_MAX_TOKENS:,} distinct words: too many for the ROUGE-L encoding")
            code = chr(n + _SURROGATE_SPAN if n >= _SURROGATES else n)
            self.codes[token] = code
        return code

    def encode(self, tokens: list[str]) -> str:
        return "".join(self._code(t) for t in tokens)

    def encode_texts(self, texts: list[str]) -> list[str]:
        return [self.encode(rouge_tokens(t)) for t in texts]


def f_measure(lcs: np.ndarray, target_lengths: np.ndarray, prediction_lengths: np.ndarray) -> np.ndarray:
    """``rouge_score``'s ``_score_lcs`` F-measure for an LCS matrix (targets are rows)."""
    lcs = lcs.astype(np.float64)
    target = np.asarray(target_lengths, dtype=np.float64)[:, None]
    prediction = np.asarray(prediction_lengths, dtype=np.float64)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / prediction
        recall = lcs / target
        total = precision + recall
        f = 2 * precision * recall / total
    empty = (target == 0) | (prediction == 0)
    return np.where(empty | ~(total > 0), 0.0, f)


def rouge_l_matrix(targets: list[str], predictions: list[str], workers: int = -1) -> np.ndarray:
    """ROUGE-L F of every encoded target against every encoded prediction (a dense matrix)."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq

    if not targets or not predictions:
        return np.zeros((len(targets), len(predictions)), dtype=np.float64)
    lcs = process.cdist(targets, predictions, scorer=LCSseq.similarity, dtype=np.int32, workers=workers)
    return f_measure(lcs, np.fromiter(map(len, targets), np.int64), np.fromiter(map(len, predictions), np.int64))


def nearest(targets: list[str], pool: list[str], workers: int = -1, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """For each encoded target: the highest ROUGE-L F against ``pool`` and its index (-1 for an empty pool).

    Works in chunks of targets so memory stays ``chunk x len(pool)``.
    """
    best = np.zeros(len(targets), dtype=np.float64)
    where = np.full(len(targets), -1, dtype=np.int64)
    if not pool:
        return best, where
    for start in range(0, len(targets), chunk):
        scores = rouge_l_matrix(targets[start : start + chunk], pool, workers)
        where[start : start + chunk] = scores.argmax(axis=1)
        best[start : start + chunk] = scores.max(axis=1)
    return best, where
