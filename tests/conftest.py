from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("CURATE_DATA_DIR", ROOT.parent / "shared" / "data")).resolve()
os.environ["CURATE_DATA_DIR"] = str(DATA_DIR)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("CURATE_DATA_DIR", str(DATA_DIR))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.fail(f"shared data not found at {DATA_DIR}; set CURATE_DATA_DIR")
    return DATA_DIR


def run_cli(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the installed ``curate`` command as a user would."""
    done = subprocess.run(
        [sys.executable, "-m", "curate.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"curate {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def text_records(texts: list[str | None]):
    """Text records ``r0, r1, ...`` in the record schema (null texts allowed)."""
    import polars as pl

    from curate.records.schema import KIND_TEXT, conform

    frame = pl.DataFrame(
        {"id": [f"r{i}" for i in range(len(texts))], "kind": [KIND_TEXT] * len(texts), "text": texts},
        schema={"id": pl.String, "kind": pl.String, "text": pl.String},
    )
    return conform(frame)


def ingested(source: str):
    """The kept records of ingesting one source (a registry name or a path)."""
    import polars as pl

    from curate.io.ingest import Ingest

    return pl.concat([batch for batch, _ in Ingest([source]).batches()])


@pytest.fixture(scope="session")
def lm_server():
    """One real ``curate serve-lm`` (SmolLM2-135M-Instruct) on a free port of 127.0.0.1 for the session."""
    from curate.llm.server import ServerProcess

    with ServerProcess() as server:
        yield server


class FaultProxy:
    """A tiny HTTP proxy in front of the real LM server that misbehaves on cue.

    ``plan`` is consumed one entry per request: ``500``, ``429``, ``400``, ``slow`` (sleeps past the
    client's timeout and closes without an answer), ``garbage`` (a 200 whose body is not JSON)
    or ``nonsense`` (a well-formed completion whose text is nonsense); when it is empty,
    requests pass through to ``upstream``.
    """

    def __init__(self, upstream: str, slow_seconds: float = 6.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        self.upstream = upstream.rstrip("/")
        self.plan: list[str] = []
        self.requests = 0
        self.slow_seconds = slow_seconds
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                done = httpx.get(proxy.upstream + self.path.removeprefix("/v1"), timeout=30)
                self._reply(done.status_code, done.content)

            def do_POST(self) -> None:
                import json
                import time

                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests += 1
                fault = proxy.plan.pop(0) if proxy.plan else None
                if fault in ("500", "429", "400"):
                    return self._reply(int(fault), b'{"error": "injected"}')
                if fault == "garbage":
                    return self._reply(200, b"<html>502 upstream hiccup</html>", "text/html")
                if fault == "nonsense":
                    reply = {
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "banana"},
                                "text": "banana",
                                "finish_reason": "stop",
                            }
                        ]
                    }
                    return self._reply(200, json.dumps(reply).encode())
                if fault == "slow":
                    time.sleep(proxy.slow_seconds)
                    return None
                done = httpx.post(
                    proxy.upstream + self.path.removeprefix("/v1"),
                    content=body,
                    timeout=300,
                    headers={"Content-Type": "application/json"},
                )
                with contextlib.suppress(OSError):
                    self._reply(done.status_code, done.content)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fault_proxy(lm_server):
    proxy = FaultProxy(lm_server.base_url)
    yield proxy
    proxy.close()
