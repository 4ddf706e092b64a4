"""numba kernels of :mod:`curate.dedup.minhash`: shingle mixing, fmix32 and the MinHash minimum, fused.

Imported only when signing (numba's import and the cached kernels' load take a moment; the CLI's
``--help`` never pays it). ``cache=True``: the JIT compile happens once per machine and Python
version, later processes load the compiled code from ``__pycache__``.

All arithmetic is done in 64 bits and cut to 32 (``& MASK``), which is exactly the uint32
arithmetic of the numpy path and of datasketch.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

MASK = np.uint64(0xFFFFFFFF)
MIX_SEED = np.uint64(0x2545F491)
MIX_MUL = np.uint64(0x5BD1E995)


@njit(inline="always", cache=True)
def _fmix32(h):  # pragma: no cover - compiled
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & MASK
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & MASK
    h ^= h >> np.uint64(16)
    return h


@njit(inline="always", cache=True)
def _take_min(h, a, b, row):  # pragma: no cover - compiled
    """``row[j] = min(row[j], a[j] * fmix32(h) + b[j] mod 2**32)`` for every permutation j."""
    m = np.uint32(_fmix32(h))
    for j in range(row.size):
        v = np.uint32(a[j] * m + b[j])
        if v < row[j]:
            row[j] = v


@njit(parallel=True, cache=True)
def compose_sign(th, token_start, counts, offsets, ngram, a, b, hashes, sigs):  # pragma: no cover - compiled
    """Per text (in parallel): its shingle hashes into ``hashes[offsets[i]:offsets[i+1]]`` and its signature.

    ``th`` are the token hashes (flattened), text i's tokens start at ``token_start[i]`` and
    number ``counts[i]``; a shingle is ``min(counts[i], ngram)`` consecutive tokens. ``sigs``
    must be filled with MAX_HASH by the caller.
    """
    for i in prange(counts.size):
        lo = offsets[i]
        width = min(counts[i], ngram)
        start = token_start[i]
        row = sigs[i]
        for s in range(offsets[i + 1] - lo):
            h = MIX_SEED
            for k in range(width):
                h = ((h << np.uint64(13)) | (h >> np.uint64(19))) & MASK
                h = ((h ^ np.uint64(th[start + s + k])) * MIX_MUL) & MASK
            h ^= np.uint64(width)
            hashes[lo + s] = np.uint32(h)
            _take_min(h, a, b, row)


@njit(parallel=True, cache=True)
def sign(hashes, offsets, a, b, sigs):  # pragma: no cover - compiled
    """Per text (in parallel): the signature of ``hashes[offsets[i]:offsets[i+1]]`` into ``sigs[i]``."""
    for i in prange(offsets.size - 1):
        row = sigs[i]
        for s in range(offsets[i], offsets[i + 1]):
            _take_min(np.uint64(hashes[s]), a, b, row)
