"""Prefect's temporary API server, started first thing instead of inside the flow's first API call.

With no ``PREFECT_API_URL``, Prefect starts a temporary server (a uvicorn subprocess) when a flow
makes its first API call, and waits for it: on 2 cores that is about 5 s in which nothing else
happens, after importing Prefect's whole server package into the flow process (about 2 s of CPU)
only to launch it. :func:`temporary_server` launches the same server (same app, UI off, the same
ephemeral services) before the flow's work is imported, so it boots while the flow process imports
the libraries the flow needs (:data:`WARM_IMPORTS`), and points this process and its children
at it. Where a server is configured (``PREFECT_API_URL`` in the environment or the profile), it
does nothing.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

from curate.errors import CurateError

# What a flow imports lazily anyway (its stages' libraries); importing it while the server boots
# overlaps the two instead of paying them one after the other.
WARM_IMPORTS = ("polars", "pyarrow.parquet", "numpy", "scipy.sparse", "sklearn.linear_model", "torch")
PRETRAIN_IMPORTS = ("polars", "pyarrow.parquet", "numpy")

# SQLite under load (a busy 2-core machine): wait for the lock instead of failing a heartbeat with
# "database is locked" (Prefect's defaults are 10 s and 5 s; it already runs SQLite in WAL mode).
SQLITE_UNDER_LOAD = {"PREFECT_SERVER_DATABASE_TIMEOUT": "60", "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "30"}


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _launch(port: int) -> subprocess.Popen:
    import prefect
    from prefect.settings import get_current_settings

    env = {
        **SQLITE_UNDER_LOAD,
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory"]
    command += ["prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen([*command, "--log-level", "error", "--lifespan", "on"], env=env)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate, and kill what does not stop within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def temporary_server(warm: tuple[str, ...] = WARM_IMPORTS) -> Iterator[str | None]:
    """Inside: ``PREFECT_API_URL`` names a temporary server (yields its URL), or the configured one (yields None)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, get_current_settings, temporary_settings

    if get_current_settings().api.url:
        yield None
        return
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    print(f"starting Prefect's temporary server on http://127.0.0.1:{port}", flush=True)
    server = _launch(port)
    try:
        for name in warm:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        deadline = time.monotonic() + PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
        while not _healthy(url):
            if server.poll() is not None:
                raise CurateError(f"Prefect's temporary server exited with code {server.returncode} before it was up")
            if time.monotonic() > deadline:
                raise CurateError(f"Prefect's temporary server on port {port} was not up in time")
            time.sleep(0.05)
    except BaseException:
        stop_process(server)
        raise
    # Stopped at exit, as Prefect stops its own: after its log and event workers have drained.
    atexit.register(stop_process, server)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url  # for worker processes the flow starts
    try:
        # It serves no UI (as Prefect's own temporary server), so no run links to one are printed.
        with temporary_settings({PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
            yield url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
