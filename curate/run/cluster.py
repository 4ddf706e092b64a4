"""A Dask cluster for library passes that run as tasks (``--dask ADDRESS``), without Prefect.

``ADDRESS`` is ``tcp://HOST:PORT`` (a running scheduler: ``dask scheduler`` and ``dask worker
tcp://HOST:PORT``; its workers must see the same paths as this process) or ``local:N`` (a
``distributed.LocalCluster`` of N single-thread in-process workers for this call, as the flows'
``local:N``). dask and distributed are imported only here, when an address is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from curate.errors import CurateError


def local_workers(address: str) -> int | None:
    """N of ``local:N``; None for a scheduler URL; a :class:`CurateError` for anything else."""
    if address.startswith("local:"):
        count = address.split(":", 1)[1] or "2"
        if not count.isdigit() or int(count) < 1:
            raise CurateError(f"--dask {address}: local:N needs a positive number of workers")
        return int(count)
    if "://" not in address:
        raise CurateError(f"--dask {address}: give a scheduler address (tcp://HOST:8786) or local:N")
    return None


@contextlib.contextmanager
def dask_client(address: str, connect_timeout: str = "10s") -> Iterator[Any]:
    """A ``distributed.Client`` on ``address`` for the duration of the block."""
    workers = local_workers(address)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CurateError(f"--dask {address}: needs dask and distributed (pip install 'curate[dask]')") from None
    if workers is not None:
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    try:
        client = Client(address, timeout=connect_timeout)
    except (OSError, TimeoutError) as error:
        raise CurateError(f"--dask {address}: cannot reach the scheduler: {error}") from None
    with client:
        yield client
