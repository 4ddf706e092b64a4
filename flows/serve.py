"""Run curate's Prefect deployments locally: server, work pool, deployments, worker.

``curate serve`` (and ``make serve``) start a Prefect server on 127.0.0.1 with the project's
own ``PREFECT_HOME`` (analytics off), create the ``curate-process`` work pool, deploy
``prefect.yaml`` and start a worker. Stopping it (Ctrl-C or SIGTERM) stops everything it
started. ``prefect deployment run 'curate-alpaca/curate-alpaca' --watch`` then runs the flow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.temporary_server import SQLITE_UNDER_LOAD, stop_process

ROOT = Path(__file__).resolve().parents[1]
POOL = "curate-process"


def environment(port: int, home: Path | None = None) -> dict[str, str]:
    return {
        **SQLITE_UNDER_LOAD,
        **os.environ,
        "PREFECT_HOME": str(home or ROOT / ".prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "CURATE_PROJECT_DIR": str(ROOT),
        "PYTHONPATH": str(ROOT),
    }


def _prefect(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "prefect"), *args]


def wait_healthy(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the Prefect server on port {port} did not become healthy in {timeout:.0f} s")


@dataclass
class Services:
    """The started server and worker, and the environment that reaches them."""

    env: dict[str, str]
    processes: list[subprocess.Popen]

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.processes)


@contextmanager
def services(port: int = 4200, home: Path | None = None) -> Iterator[Services]:
    """Server, work pool, deployments and worker, running while the ``with`` block runs.

    Yields them with the environment that points Prefect commands at the server. Leaving the block, by
    an error, Ctrl-C or SIGTERM too, stops everything started here.
    """
    env = environment(port, home)
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    started: list[subprocess.Popen] = []
    running = Services(env, started)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        print(f"starting a Prefect server on http://127.0.0.1:{port} (PREFECT_HOME={env['PREFECT_HOME']})", flush=True)
        server_log = open(Path(env["PREFECT_HOME"]) / "server.log", "ab")  # noqa: SIM115 - lives with the server
        started.append(
            subprocess.Popen(
                _prefect("server", "start", "--host", "127.0.0.1", "--port", str(port)),
                env=env,
                cwd=ROOT,
                start_new_session=True,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
        )
        print(f"  server log: {server_log.name}", flush=True)
        wait_healthy(port)
        subprocess.run(
            _prefect("work-pool", "create", POOL, "--type", "process", "--overwrite"),
            env=env,
            cwd=ROOT,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        deployed = subprocess.run(
            _prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(ROOT / "prefect.yaml")),
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if deployed.returncode != 0:
            print(deployed.stdout[-3000:] + deployed.stderr[-3000:], file=sys.stderr)
            raise RuntimeError("prefect deploy failed; its output is above")
        print(f"  deployments from {ROOT / 'prefect.yaml'} registered; work pool {POOL}", flush=True)
        started.append(
            subprocess.Popen(_prefect("worker", "start", "--pool", POOL), env=env, cwd=ROOT, start_new_session=True)
        )
        yield running
        if not running.alive():
            raise RuntimeError("the Prefect server or worker stopped on its own; see its output above")
    finally:
        for proc in reversed(started):  # the worker first, so it can still report to the server
            stop_process(proc, timeout=20)
        signal.signal(signal.SIGTERM, previous)
        if started:
            print("stopped the Prefect server and worker", flush=True)


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(143)


def serve(port: int = 4200, home: Path | None = None) -> int:
    """Start everything, wait until stopped (Ctrl-C or SIGTERM), stop everything; an exit code."""
    try:
        with services(port, home) as running:
            print(
                f"ready: PREFECT_API_URL={running.env['PREFECT_API_URL']} prefect deployment run "
                "'curate-alpaca/curate-alpaca' --watch   (Ctrl-C stops the server and the worker)",
                flush=True,
            )
            while running.alive():
                time.sleep(1)
    except (KeyboardInterrupt, SystemExit):
        return 0
    except RuntimeError as exc:
        print(f"curate serve: {exc}", file=sys.stderr)
        return 1
    return 1


if __name__ == "__main__":
    raise SystemExit(serve(int(sys.argv[1]) if len(sys.argv) > 1 else 4200))
