"""A small OpenAI-compatible HTTP server for a local causal LM.

``curate serve-lm`` serves SmolLM2-135M-Instruct (or any HF causal LM) at ``/v1``: ``GET /models``,
``POST /chat/completions`` (the model's chat template) and ``POST /completions``. It is the real
stand-in for a hosted endpoint in tests and on machines without one. (FastAPI is imported at
module level because it resolves the handlers' annotations there; only ``curate serve-lm`` imports
this module.) Generation is serialized
by a lock (one model, one forward pass at a time); ``n`` choices of one request are generated
as one batch.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException, Request


def create_app(lm: Any) -> Any:
    from curate.generate import chat_prompt, generate_batch

    app = FastAPI(title="curate serve-lm")
    lock = threading.Lock()
    served = lm.name

    def sampling(body: dict[str, Any]) -> dict[str, Any]:
        try:
            stop = body.get("stop")
            return {
                "max_tokens": int(body.get("max_tokens") or body.get("max_completion_tokens") or 128),
                "temperature": float(body.get("temperature", 1.0)),
                "top_p": float(body.get("top_p", 1.0)),
                "seed": None if body.get("seed") is None else int(body["seed"]),
                "n": max(1, int(body.get("n", 1))),
                "stop": [stop] if isinstance(stop, str) else stop,
            }
        except (TypeError, ValueError) as exc:
            raise HTTPException(400, f"bad sampling parameter: {exc}") from None

    def run(prompt: str | list[dict[str, str]], params: dict[str, Any]):
        # The tokenizer is not safe to share between threads ("Already borrowed"): template and
        # generation both happen under the lock.
        with lock:
            text = prompt if isinstance(prompt, str) else chat_prompt(lm, prompt)
            return generate_batch(lm, [text], batch_size=1, **params)[0]

    def usage(choices) -> dict[str, int]:
        prompt_tokens = choices[0].prompt_tokens
        completion = sum(c.completion_tokens for c in choices)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise HTTPException(400, "the body is not JSON") from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object")
        return body

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "curate", "created": 0}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        import anyio

        body = await json_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
            raise HTTPException(400, "messages must be a list of {role, content}")
        params = sampling(body)
        prompt = [{"role": m.get("role", "user"), "content": str(m["content"])} for m in messages]
        choices = await anyio.to_thread.run_sync(run, prompt, params)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or served,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": c.text}, "finish_reason": c.finish_reason}
                for i, c in enumerate(choices)
            ],
            "usage": usage(choices),
        }

    @app.post("/v1/completions")
    async def completions(request: Request) -> dict[str, Any]:
        import anyio

        body = await json_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise HTTPException(400, "prompt must be a string")
        params = sampling(body)
        choices = await anyio.to_thread.run_sync(run, prompt, params)
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model") or served,
            "choices": [
                {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
                for i, c in enumerate(choices)
            ],
            "usage": usage(choices),
        }

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, model: str | None = None, device: str | None = None) -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from curate.lm import load_lm

    lm = load_lm(model, device=device)
    app = create_app(lm)
    print(f"serving {lm.name} ({lm.path}, {lm.device}) at http://{host}:{port}/v1", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``curate serve-lm`` as a child process on a free port of 127.0.0.1, ready when started.

    Tests and benchmarks use it as the real local stand-in for a hosted endpoint.
    """

    def __init__(self, model: str | None = None, port: int | None = None, ready_timeout: float = 300.0) -> None:
        self.model = model
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.process: Any = None
        self.log_path: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ServerProcess:
        import os
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        import httpx

        from curate.errors import CurateError

        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        command = [sys.executable, "-m", "curate.cli", "serve-lm", "--port", str(self.port)]
        if self.model:
            command += ["--model", self.model]
        handle, self.log_path = tempfile.mkstemp(prefix="curate-serve-lm-", suffix=".log")
        with open(handle, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CurateError(
                    f"serve-lm exited ({self.process.returncode}): {Path(self.log_path).read_text()[-2000:]}"
                )
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise CurateError(f"serve-lm did not answer at {self.base_url} within {self.ready_timeout:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except Exception:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
