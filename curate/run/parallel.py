"""Map a function over texts on worker processes, each distinct text once.

Corpora repeat themselves a lot, so distinct texts are computed once and the results fanned
back out. Workers are spawned, not forked (polars is not fork-safe); starting them costs about
a second, so below ``min_parallel`` distinct texts everything runs in this process. A pool
that breaks (a script without an ``if __name__ == "__main__"`` guard) falls back to running
here, with a warning.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def _main_script_hidden() -> Iterator[None]:
    """Spawned workers re-run the user's ``__main__`` script unless it is guarded by
    ``if __name__ == "__main__"``; ours need only curate's functions, so the script is hidden
    from them while the pool runs (a ten-line script of the Python API needs no guard)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None or not hasattr(main, "__file__"):
        yield
        return
    path = main.__file__
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


def _run_chunk(function: Callable[[str], T], texts: list[str]) -> list[T]:
    return [function(text) for text in texts]


def map_distinct(
    function: Callable[[str], T],
    texts: list[str | None],
    workers: int | None = None,
    chunk_size: int = 10_000,
    min_parallel: int = 10_000,
    label: str = "map",
) -> list[T]:
    """``function(text)`` for every text (None counts as ""); ``function`` must be picklable."""
    distinct = list(dict.fromkeys(text or "" for text in texts))
    workers = workers or os.cpu_count() or 1
    results = None
    # A daemon process (a Dask worker under its nanny) may not start children: run here.
    if workers > 1 and len(distinct) >= min_parallel and not multiprocessing.current_process().daemon:
        n_chunks = math.ceil(math.ceil(len(distinct) / chunk_size) / workers) * workers
        size = math.ceil(len(distinct) / n_chunks)
        chunks = [distinct[start : start + size] for start in range(0, len(distinct), size)]
        context = multiprocessing.get_context("spawn")
        try:
            with (
                _main_script_hidden(),
                ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=context) as pool,
            ):
                results = [row for rows in pool.map(partial(_run_chunk, function), chunks) for row in rows]
        except BrokenProcessPool as exc:
            warnings.warn(f"{label}: process pool failed ({exc}); running in one process", stacklevel=2)
    if results is None:
        results = _run_chunk(function, distinct)
    by_text = dict(zip(distinct, results, strict=True))
    return [by_text[text or ""] for text in texts]
