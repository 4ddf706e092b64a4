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


def pair_f(lcs: np.ndarray, target_lengths: np.ndarray, prediction_lengths: np.ndarray) -> np.ndarray:
    """The same F-measure for aligned 1-D arrays of pairs."""
    lcs = np.asarray(lcs, dtype=np.float64)
    target = np.asarray(target_lengths, dtype=np.float64)
    prediction = np.asarray(prediction_lengths, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = lcs / prediction
        recall = lcs / target
        total = precision + recall
        f = 2 * precision * recall / total
    return np.where((target == 0) | (prediction == 0) | ~(total > 0), 0.0, f)


def rouge_l_matrix(targets: list[str], predictions: list[str], workers: int = -1) -> np.ndarray:
    """ROUGE-L F of every encoded target against every encoded prediction (a dense matrix)."""
    from rapidfuzz import process
    from rapidfuzz.distance import LCSseq

    if not targets or not predictions:
        return np.zeros((len(targets), len(predictions)), dtype=np.float64)
    lcs = process.cdist(targets, predictions, scorer=LCSseq.similarity, dtype=np.int32, workers=workers)
    return f_measure(lcs, np.fromiter(map(len, targets), np.int64), np.fromiter(map(len, predictions), np.int64))


def nearest(targets: list[str], pool: list[str], workers: int = -1, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For each encoded target: the highest ROUGE-L F against ``pool`` and its index (-1 for an empty pool).

    Works in chunks of targets so memory stays ``chunk x len(pool)``. The maximum is found with
    rapidfuzz's normalized Indel similarity, ``2 lcs / (len_t + len_p)``, which is the same F up
    to rounding, in float32 and in C; the exact ``rouge_score`` F is then computed for every pair
    within a relative 1e-4 of each row's best, so the returned score is exactly the largest F
    (ties go to the lowest pool index, as ``argmax`` over :func:`rouge_l_matrix` would).
    """
    from rapidfuzz import process
    from rapidfuzz.distance import Indel, LCSseq

    best = np.zeros(len(targets), dtype=np.float64)
    where = np.full(len(targets), -1, dtype=np.int64)
    if not pool:
        return best, where
    pool_lengths = np.fromiter(map(len, pool), np.int64, count=len(pool))
    for start in range(0, len(targets), chunk):
        part = targets[start : start + chunk]
        lengths = np.fromiter(map(len, part), np.int64, count=len(part))
        proxy = process.cdist(part, pool, scorer=Indel.normalized_similarity, dtype=np.float32, workers=workers)
        top = proxy.max(axis=1)
        rows, cols = np.nonzero((proxy >= (top * (1 - 1e-4))[:, None]) & (top[:, None] > 0))
        lcs = np.fromiter(
            (LCSseq.similarity(part[r], pool[c]) for r, c in zip(rows.tolist(), cols.tolist(), strict=True)),
            np.int64,
            count=len(rows),
        )
        exact = pair_f(lcs, lengths[rows], pool_lengths[cols])
        order = np.lexsort((cols, -exact, rows))
        first = order[np.r_[True, rows[order][1:] != rows[order][:-1]]] if len(order) else order
        block_best = np.zeros(len(part), dtype=np.float64)
        block_where = np.zeros(len(part), dtype=np.int64)
        block_best[rows[first]] = exact[first]
        block_where[rows[first]] = cols[first]
        block_where[block_best == 0] = 0
        best[start : start + len(part)] = block_best
        where[start : start + len(part)] = block_where
    return best, where
