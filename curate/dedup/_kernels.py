"""numba kernels of :mod:`curate.dedup.minhash`: tokens, their SHA-1, shingle mixing, fmix32 and the minimum.

Imported only when signing (numba's import and the cached kernels' load take a moment; the CLI's
``--help`` never pays it). ``cache=True``: the JIT compile happens once per machine and Python
version, later processes load the compiled code from ``__pycache__``.

All arithmetic is done in 64 bits and cut to 32 (``& MASK``), which is exactly the uint32
arithmetic of :func:`.minhash.shingle_hash32` and of datasketch.

The kernels run on numba's own ``workqueue`` thread pool, not its OpenMP layer (unless
``NUMBA_THREADING_LAYER`` says otherwise): numba's OpenMP runtime beside torch's in one process
made every later torch call about 3x slower in CPU time (measured: embedding 300 Alpaca records
after a near dedup took 8.6 CPU s against 3.1), which is what a flow or script that dedups then
embeds does. Kernels run one at a time per process (``minhash._run``'s lock), as workqueue needs.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "workqueue"

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


# Tokens. A text is UTF-8 bytes; whitespace is Unicode White_Space (what the regex ``\s`` of
# polars matches), found without decoding: the ASCII ones and the 2- and 3-byte sequences of
# U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F and U+3000.


@njit(inline="always", cache=True)
def _space_len(data, p, end):  # pragma: no cover - compiled
    """Byte length of the whitespace character at ``p`` (0 if it is not whitespace)."""
    c = np.int64(data[p])  # int64 throughout: numba's chained comparisons on uint8 are slow
    if c < 0x80:
        return 1 if c == 32 or (c >= 9 and c <= 13) else 0
    if c == 0xC2:
        if p + 1 < end:
            d = np.int64(data[p + 1])
            return 2 if d == 0x85 or d == 0xA0 else 0
        return 0
    if c < 0xE1 or c > 0xE3 or p + 2 >= end:
        return 0
    d = np.int64(data[p + 1])
    e = np.int64(data[p + 2])
    if c == 0xE1:
        return 3 if d == 0x9A and e == 0x80 else 0
    if c == 0xE2:
        if d == 0x80 and ((e >= 0x80 and e <= 0x8A) or e == 0xA8 or e == 0xA9 or e == 0xAF):
            return 3
        return 3 if d == 0x81 and e == 0x9F else 0
    return 3 if d == 0x80 and e == 0x80 else 0


@njit(inline="always", cache=True)
def _char_len(byte):  # pragma: no cover - compiled
    c = np.int64(byte)
    if c < 0x80:
        return 1
    if c < 0xE0:
        return 2
    return 3 if c < 0xF0 else 4


@njit(inline="always", cache=True)
def _rotl32(x, r):  # pragma: no cover - compiled
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & MASK


@njit(cache=True)
def _sha1_32(data, lo, hi, w):  # pragma: no cover - compiled
    """The first 4 bytes of SHA-1(data[lo:hi]), little-endian (datasketch's ``sha1_hash32``)."""
    n = hi - lo
    blocks = (n + 8) // 64 + 1
    h0, h1, h2, h3, h4 = (
        np.uint64(0x67452301),
        np.uint64(0xEFCDAB89),
        np.uint64(0x98BADCFE),
        np.uint64(0x10325476),
        np.uint64(0xC3D2E1F0),
    )
    bits = np.uint64(n) * np.uint64(8)
    for block in range(blocks):
        base = block * 64
        if base + 64 <= n:  # a whole block of the message
            for j in range(16):
                q = lo + base + 4 * j
                w[j] = (
                    (np.uint64(data[q]) << np.uint64(24))
                    | (np.uint64(data[q + 1]) << np.uint64(16))
                    | (np.uint64(data[q + 2]) << np.uint64(8))
                    | np.uint64(data[q + 3])
                )
        else:  # the end of the message, the 0x80 marker, zeros and (in the last block) the bit length
            for j in range(16):
                v = np.uint64(0)
                for k in range(4):
                    q = base + 4 * j + k
                    if q < n:
                        byte = np.uint64(data[lo + q])
                    elif q == n:
                        byte = np.uint64(0x80)
                    elif block == blocks - 1 and j >= 14:
                        byte = (bits >> np.uint64(8 * (7 - (4 * (j - 14) + k)))) & np.uint64(0xFF)
                    else:
                        byte = np.uint64(0)
                    v = (v << np.uint64(8)) | byte
                w[j] = v
        for j in range(16, 80):
            x = w[j - 3] ^ w[j - 8] ^ w[j - 14] ^ w[j - 16]
            w[j] = _rotl32(x, 1)
        a, b, c, d, e = h0, h1, h2, h3, h4
        for j in range(20):
            f = (b & c) | ((~b & MASK) & d)
            t = (_rotl32(a, 5) + f + e + np.uint64(0x5A827999) + w[j]) & MASK
            e, d, c, b, a = d, c, _rotl32(b, 30), a, t
        for j in range(20, 40):
            t = (_rotl32(a, 5) + (b ^ c ^ d) + e + np.uint64(0x6ED9EBA1) + w[j]) & MASK
            e, d, c, b, a = d, c, _rotl32(b, 30), a, t
        for j in range(40, 60):
            f = (b & c) | (b & d) | (c & d)
            t = (_rotl32(a, 5) + f + e + np.uint64(0x8F1BBCDC) + w[j]) & MASK
            e, d, c, b, a = d, c, _rotl32(b, 30), a, t
        for j in range(60, 80):
            t = (_rotl32(a, 5) + (b ^ c ^ d) + e + np.uint64(0xCA62C1D6) + w[j]) & MASK
            e, d, c, b, a = d, c, _rotl32(b, 30), a, t
        h0 = (h0 + a) & MASK
        h1 = (h1 + b) & MASK
        h2 = (h2 + c) & MASK
        h3 = (h3 + d) & MASK
        h4 = (h4 + e) & MASK
    # digest bytes 0..3 are h0 big-endian; read little-endian that is h0 byte-swapped
    return np.uint32(
        ((h0 >> np.uint64(24)) & np.uint64(0xFF))
        | ((h0 >> np.uint64(8)) & np.uint64(0xFF00))
        | ((h0 << np.uint64(8)) & np.uint64(0xFF0000))
        | ((h0 << np.uint64(24)) & np.uint64(0xFF000000))
    )


@njit(inline="always", cache=True)
def _mix64(h):  # pragma: no cover - compiled
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@njit(inline="always", cache=True)
def _token_key(data, lo, hi):  # pragma: no cover - compiled
    """A token's first 16 bytes packed in two words, and its table key (a 64-bit hash of all its bytes)."""
    n = hi - lo
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    for k in range(min(n, 8)):
        w0 |= np.uint64(data[lo + k]) << np.uint64(8 * k)
    for k in range(8, min(n, 16)):
        w1 |= np.uint64(data[lo + k]) << np.uint64(8 * (k - 8))
    h = np.uint64(n) * np.uint64(0x9E3779B97F4A7C15)
    for p in range(lo + 16, hi):  # only tokens longer than 16 bytes: FNV-1a over the rest
        h = (h ^ np.uint64(data[p])) * np.uint64(0x100000001B3)
    h = _mix64(h ^ w0)
    return _mix64(h ^ w1), w0, w1


@njit(inline="always", cache=True)
def _next_token(data, p, hi, char_mode, count):  # pragma: no cover - compiled
    """The token at or after ``p`` in ``data[:hi]``: (start, end); start -1: none left, -2: a space (chars)."""
    q = p
    while q < hi:
        c = np.int64(data[q])
        if 32 < c < 0x80:  # the common case: printable ASCII
            break
        sp = _space_len(data, q, hi)
        if sp == 0:
            break
        q += sp
    if q >= hi:
        return -1, hi
    if char_mode:
        if q > p and count > 0:
            return -2, q
        return q, q + _char_len(data[q])
    end = q + 1
    while end < hi:
        c = np.int64(data[end])
        # printable ASCII and UTF-8 continuation bytes never start whitespace; other bytes are checked
        if 32 < c < 0xC0 or _space_len(data, end, hi) == 0:
            end += 1
        else:
            break
    return q, end


@njit(parallel=True, cache=True)
def count_tokens(data, offsets, char_mode, limit, counts):  # pragma: no cover - compiled
    """Each text's token count, at most ``limit`` (texts in parallel). Words: maximal runs of
    non-whitespace; characters: every character, a whitespace run as one space, none at the ends."""
    for t in prange(offsets.size - 1):
        hi = offsets[t + 1]
        p = offsets[t]
        count = 0
        while count < limit:
            start, p = _next_token(data, p, hi, char_mode, count)
            if start == -1:
                break
            count += 1
        counts[t] = count


# The token table: one row of four uint64 per slot (one cache line holds a whole slot): the
# token's first 16 bytes (two words, zero-padded), its length and SHA-1 hash (``len << 32 |
# hash``) and where it first occurs plus one (0: an empty slot). A token of up to 16 bytes is
# compared in the slot alone: no trip to wherever in the batch it first occurred. Open
# addressing, linear probing, doubled when half full.
_W0, _W1, _META, _AT = 0, 1, 2, 3


@njit(cache=True)
def _grow(table, data):  # pragma: no cover - compiled
    """The table rehashed into twice the slots."""
    cap = 2 * table.shape[0]
    new = np.zeros((cap, 4), dtype=np.uint64)
    for old in range(table.shape[0]):
        if table[old, _AT]:
            at = np.int64(table[old, _AT]) - 1
            key = _token_key(data, at, at + np.int64(table[old, _META] >> np.uint64(32)))[0]
            s = np.int64(key & np.uint64(cap - 1))
            while new[s, _AT]:
                s = (s + 1) & (cap - 1)
            for k in range(4):
                new[s, k] = table[old, k]
    return new


@njit(cache=True)
def _hash_until_full(data, offsets, t, p, count, t1, char_mode, limit, space_hash, th, token_start, table, used, w):
    """Hash tokens from text ``t`` (at byte ``p``, its ``count``-th token) on, until text ``t1`` or the
    table is half full; returns where it stopped (t, p, count) and the slots used. A token
    already in the table is not hashed again.
    """  # pragma: no cover - compiled
    mask = table.shape[0] - 1
    full = table.shape[0] // 2
    while t < t1:
        hi = offsets[t + 1]
        at = token_start[t]
        while count < limit:
            if used >= full:
                return t, p, count, used
            start, p = _next_token(data, p, hi, char_mode, count)
            if start == -1:
                break
            if start == -2:
                th[at + count] = space_hash
                count += 1
                continue
            length = p - start
            key, w0, w1 = _token_key(data, start, p)
            s = np.int64(key & np.uint64(mask))
            while True:
                if table[s, _AT] == 0:
                    value = _sha1_32(data, start, p, w)
                    table[s, _W0] = w0
                    table[s, _W1] = w1
                    table[s, _META] = (np.uint64(length) << np.uint64(32)) | np.uint64(value)
                    table[s, _AT] = np.uint64(start + 1)
                    used += 1
                    break
                meta = table[s, _META]
                if table[s, _W0] == w0 and table[s, _W1] == w1 and np.int64(meta >> np.uint64(32)) == length:
                    q = 16
                    if length > 16:  # rare: the rest of a long token, from its first occurrence
                        other = np.int64(table[s, _AT]) - 1
                        while q < length and data[other + q] == data[start + q]:
                            q += 1
                    if q >= length:
                        value = np.uint32(meta & MASK)
                        break
                s = (s + 1) & mask
            th[at + count] = value
            count += 1
        t += 1
        count = 0
        if t < t1:
            p = offsets[t]
    return t, p, count, used


@njit(cache=True)
def _hash_chunk(data, offsets, t0, t1, char_mode, limit, space_hash, th, token_start):  # pragma: no cover
    """Texts ``t0..t1``'s token hashes into ``th[token_start[t]:]``, SHA-1 once per distinct token."""
    table = np.zeros((1 << 12, 4), dtype=np.uint64)
    w = np.empty(80, dtype=np.uint64)
    t, p, count, used = t0, offsets[t0], 0, 0
    while True:
        t, p, count, used = _hash_until_full(
            data, offsets, t, p, count, t1, char_mode, limit, space_hash, th, token_start, table, used, w
        )
        if t >= t1:
            return
        table = _grow(table, data)


@njit(parallel=True, cache=True)
def hash_tokens(data, offsets, bounds, char_mode, limit, space_hash, th, token_start):  # pragma: no cover
    """:func:`_hash_chunk` over runs of texts in parallel (``bounds``: each run's first text, and the end)."""
    for c in prange(bounds.size - 1):
        _hash_chunk(data, offsets, bounds[c], bounds[c + 1], char_mode, limit, space_hash, th, token_start)
