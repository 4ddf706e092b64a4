"""MinHash signatures, computed in batches (polars, numpy and numba), bit-for-bit equal to datasketch.

Shingles. A record's ``text`` is normalized (NFKC, lowercase) and split into tokens: words
(split on Unicode whitespace, what polars' regex ``\\s`` matches; the default) or characters
(whitespace collapsed to one space; for languages written without spaces). A shingle is
``ngram`` consecutive tokens. A text with at least one token but fewer than ``ngram`` has
exactly one shingle, made of all its tokens; an empty or whitespace-only text has none (it
gets the empty signature and is never a near-duplicate of anything). At most
``max_shingles`` shingles per text are used (the first ones), so one pathological 50 MB
document cannot stall a run.

Hash. A shingle's 32-bit hash is built from its tokens: each token is hashed like datasketch
does by default (the first 4 bytes of SHA-1, little-endian), and the token hashes are mixed
in order (:func:`shingle_hash32`). SHA-1 is computed once per distinct token (per chunk of
texts a thread takes), which is what makes this fast. :class:`ShingleHash` is the same function for one shingle, to pass
as ``hashfunc`` to ``datasketch.MinHash``.

Signature. datasketch's default ``affine32`` scheme: permutation parameters from
``numpy.random.RandomState(seed)``, each hash pre-mixed with the 32-bit MurmurHash3 finalizer,
then ``a * h + b mod 2**32`` and the minimum over the shingles. So
``MinHash(num_perm, seed, hashfunc=ShingleHash(mode))`` updated with the same shingles has
exactly our ``hashvalues``, and signatures interoperate with ``MinHashLSH``, ``LeanMinHash``
and datasketch's storage backends.

Kernels. Normalization is polars (and Python's NFKC tables on non-ASCII rows); the rest is
numba (:mod:`._kernels`, compiled once and cached, parallel over texts): one kernel counts
each text's tokens over the UTF-8 bytes, one hashes them (a table of distinct tokens), and
one fuses the token mix, the finalizer and the multiply-add-minimum over the permutations.
numba is imported only when something is signed: importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import os
import threading
import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

MAX_HASH = np.uint32(0xFFFFFFFF)
_MIX_SEED = 0x2545F491
_MIX_MUL = 0x5BD1E995
_MASK = 0xFFFFFFFF


@dataclass(frozen=True)
class ShingleParams:
    """How texts become shingles.

    Attributes:
        ngram: tokens per shingle (5 word tokens by default).
        mode: ``word`` (whitespace tokens) or ``char`` (characters).
        max_shingles: shingles used per text at most (the first ones).
    """

    ngram: int = 5
    mode: Literal["word", "char"] = "word"
    max_shingles: int = 100_000

    def __post_init__(self) -> None:
        if self.ngram < 1:
            raise ValueError("ngram must be at least 1")
        if self.mode not in ("word", "char"):
            raise ValueError(f"shingle mode must be 'word' or 'char', not {self.mode!r}")
        if self.max_shingles < 1:
            raise ValueError("max_shingles must be at least 1")


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's affine32 permutation parameters for (num_perm, seed)."""
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def token_hash32(token: bytes) -> int:
    return int.from_bytes(hashlib.sha1(token).digest()[:4], "little")


def _rotl13(h: int) -> int:
    return ((h << 13) | (h >> 19)) & _MASK


def shingle_hash32(token_hashes: list[int]) -> int:
    """Mix token hashes, in order, into one 32-bit shingle hash."""
    h = _MIX_SEED
    for t in token_hashes:
        h = ((_rotl13(h) ^ t) * _MIX_MUL) & _MASK
    return (h ^ len(token_hashes)) & _MASK


class ShingleHash:
    """The shingle hash as a datasketch ``hashfunc``: takes a shingle's UTF-8 bytes.

    Word shingles are tokens joined by single spaces; character shingles are the characters.
    """

    def __init__(self, mode: Literal["word", "char"] = "word") -> None:
        self.mode = mode

    def __call__(self, shingle: bytes) -> int:
        tokens = shingle.split(b" ") if self.mode == "word" else [c.encode("utf-8") for c in shingle.decode("utf-8")]
        return shingle_hash32([token_hash32(t) for t in tokens])


def normalize_for_shingles(texts: pl.Series) -> pl.Series:
    """NFKC (Python's tables, only on non-ASCII rows) and lowercase."""
    texts = texts.fill_null("")
    rows = (texts.str.len_bytes() != texts.str.len_chars()).arg_true()
    if rows.len():
        fixed = pl.Series([unicodedata.normalize("NFKC", t) for t in texts.gather(rows).to_list()], dtype=pl.String)
        texts = texts.scatter(rows, fixed)
    return texts.str.to_lowercase()


def text_token_hashes(
    texts: pl.Series, params: ShingleParams, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Every token's hash (flattened, text by text) and each text's token count, from raw texts.

    The texts are normalized (:func:`normalize_for_shingles`), then a numba kernel walks their
    UTF-8 bytes: one pass counts the tokens (at most ``max_shingles + ngram - 1`` per text: the
    rest of a huge text is never looked at), a second one hashes them, SHA-1 once per distinct
    token per chunk of texts, chunks in parallel.
    """
    data, offsets = _utf8(normalize_for_shingles(texts))
    n = offsets.size - 1
    threads = _threads(workers)
    counts = np.zeros(n, dtype=np.int64)
    limit = params.max_shingles + params.ngram - 1
    char_mode = params.mode == "char"
    space = np.uint32(token_hash32(b" "))
    _run("count_tokens", threads, data, offsets, char_mode, limit, counts)
    token_start = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=token_start[1:])
    th = np.empty(int(counts.sum()), dtype=np.uint32)
    if th.size:
        bounds = _chunks(offsets, threads)
        _run("hash_tokens", threads, data, offsets, bounds, char_mode, limit, space, th, token_start)
    return th, counts


def _utf8(texts: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The texts' UTF-8 bytes and their byte offsets (one more than texts), without copies where arrow allows."""
    import pyarrow as pa

    arr = texts.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    _, offset_buffer, data_buffer = arr.buffers()
    offsets = np.frombuffer(offset_buffer, dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.zeros(0, dtype=np.uint8)
    return data, np.ascontiguousarray(offsets)


def _chunks(offsets: np.ndarray, parts: int) -> np.ndarray:
    """First text of each of about ``parts`` runs of texts of equal bytes (and the end)."""
    n = offsets.size - 1
    targets = np.linspace(offsets[0], offsets[-1], parts + 1)[1:-1]
    cuts = np.searchsorted(offsets[:-1], targets)
    return np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)


@dataclass
class Shingles:
    """The shingle hashes of a batch of texts: ``hashes[offsets[i]:offsets[i+1]]`` is text i's."""

    hashes: np.ndarray
    offsets: np.ndarray

    def of(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)


def shingle(texts: pl.Series, params: ShingleParams, workers: int | None = None) -> Shingles:
    """Shingle hashes of every text (see :func:`shingle_hash32`)."""
    return compose(*text_token_hashes(texts, params, workers), params, workers)


def _layout(counts: np.ndarray, params: ShingleParams) -> tuple[np.ndarray, np.ndarray]:
    """Each text's first shingle (``offsets``, one more than texts) and first token."""
    n = params.ngram
    per_text = np.minimum(np.where(counts >= n, counts - n + 1, np.minimum(counts, 1)), params.max_shingles)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(per_text, out=offsets[1:])
    token_start = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=token_start[1:])
    return offsets, token_start


def compose(th: np.ndarray, counts: np.ndarray, params: ShingleParams, workers: int | None = None) -> Shingles:
    """Shingle hashes from the texts' token hashes (``th``, flattened) and token counts."""
    empty = np.zeros(0, dtype=np.uint32)
    return compose_and_sign(th, counts, params, empty, empty, workers)[0]


def compose_and_sign(
    th: np.ndarray,
    counts: np.ndarray,
    params: ShingleParams,
    a: np.ndarray,
    b: np.ndarray,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> tuple[Shingles, np.ndarray]:
    """Shingle hashes and MinHash signatures in one pass (the fused kernel, parallel over texts).

    ``out`` (uint32, one row per text, ``a.size`` columns), when given, receives the signatures.
    """
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    offsets, token_start = _layout(counts, params)
    hashes = np.empty(int(offsets[-1]), dtype=np.uint32)
    sigs = np.empty((counts.size, a.size), dtype=np.uint32) if out is None else out
    sigs.fill(MAX_HASH)
    th = np.ascontiguousarray(th, dtype=np.uint32)
    _run("compose_sign", workers, th, token_start, counts, offsets, params.ngram, *_perm(a, b), hashes, sigs)
    return Shingles(hashes, offsets), sigs


def signatures(shingles: Shingles, a: np.ndarray, b: np.ndarray, workers: int | None = None) -> np.ndarray:
    """MinHash signatures (uint32, one row per text); texts without shingles get all MAX_HASH.

    A numba kernel, parallel over texts (``workers`` threads, by default one per CPU this
    process may use): per shingle, fmix32 once, then the multiply, add and minimum for every
    permutation.
    """
    sigs = np.full((shingles.offsets.size - 1, a.size), MAX_HASH, dtype=np.uint32)
    hashes = np.ascontiguousarray(shingles.hashes, dtype=np.uint32)
    offsets = np.ascontiguousarray(shingles.offsets, dtype=np.int64)
    _run("sign", workers, hashes, offsets, *_perm(a, b), sigs)
    return sigs


def _perm(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(a, dtype=np.uint32), np.ascontiguousarray(b, dtype=np.uint32)


_KERNEL_LOCK = threading.Lock()


def _threads(workers: int | None) -> int:
    """``workers``, or the CPUs this process may run on (``taskset`` respected)."""
    if workers:
        return max(1, workers)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _run(name: str, workers: int | None, *args: object) -> None:
    """Call a kernel of :mod:`._kernels` (numba, imported here: never at module import) on ``workers`` threads.

    One kernel at a time per process: numba's fallback threading layer is not safe to enter
    from two threads at once, and each kernel already uses every core it is given.
    """
    import numba

    from curate.dedup import _kernels

    threads = min(_threads(workers), numba.config.NUMBA_NUM_THREADS)
    with _KERNEL_LOCK:
        previous = numba.get_num_threads()
        numba.set_num_threads(threads)
        try:
            getattr(_kernels, name)(*args)
        finally:
            numba.set_num_threads(previous)


def estimated_jaccard(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Share of equal signature values, row by row (datasketch's ``MinHash.jaccard``)."""
    return (left == right).mean(axis=-1)
