"""A small OpenAI-compatible HTTP server for a local causal LM.

``curate serve-lm`` serves SmolLM2-135M-Instruct (or any HF causal LM) at ``/v1``: ``GET /models``,
``POST /chat/completions`` (the model's chat template) and ``POST /completions``. It is the real
stand-in for a hosted endpoint in tests and on machines without one. (FastAPI is imported at
module level because it resolves the handlers' annotations there; only ``curate serve-lm`` imports
this module.)

One worker thread owns the model. Requests that arrive together with the same sampling
parameters are generated as one batch (up to ``max_batch``, gathered for ``window`` seconds
after the first), so concurrent clients such as ``curate self-instruct --concurrency 8`` get the
throughput of the in-process backend. Like OpenAI's, ``seed`` is best effort: a request alone
(or with ``--max-batch 1``) is reproducible; in a batch its sample also depends on its
batch-mates. Each response names its batch size in the ``x-curate-batch-size`` header.

``stream: true`` is answered with server-sent events in OpenAI's chunk format (a role chunk,
content chunks, a final chunk with the finish reason, usage when ``stream_options.include_usage``
asks for it, then ``[DONE]``). The answer is generated whole in its batch and then sent in
chunks, so streaming changes the wire format, not the time to the first token.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import StreamingResponse


@dataclass
class _Job:
    prompt: str | list[dict[str, str]]
    params: dict[str, Any]
    done: Future = field(default_factory=Future)

    def group(self) -> tuple:
        """Requests batch together only when everything but the prompt and the seed is equal."""
        p = self.params
        return (p["max_tokens"], p["temperature"], p["top_p"], p["n"], tuple(p["stop"] or ()))


class Batcher:
    """The model's one worker thread: gathers concurrent requests into generation batches."""

    def __init__(self, lm: Any, max_batch: int = 16, window: float = 0.02) -> None:
        self.lm = lm
        self.max_batch = max(1, max_batch)
        self.window = window
        self.pending: deque[_Job] = deque()
        self.ready = threading.Condition()
        threading.Thread(target=self._loop, name="serve-lm-batcher", daemon=True).start()

    def submit(self, prompt: str | list[dict[str, str]], params: dict[str, Any]) -> tuple[list[Any], int]:
        """The request's choices and the size of the batch it was generated in (blocks)."""
        job = _Job(prompt, params)
        with self.ready:
            self.pending.append(job)
            self.ready.notify()
        return job.done.result()

    def _take(self) -> list[_Job]:
        with self.ready:
            while not self.pending:
                self.ready.wait()
            first = self.pending.popleft()
            batch = [first]
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch:
                match = next((j for j in self.pending if j.group() == first.group()), None)
                if match is not None:
                    self.pending.remove(match)
                    batch.append(match)
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.ready.wait(left)
            return batch

    def _loop(self) -> None:
        from curate.llm.generate import chat_prompt, generate_batch

        while True:
            batch = self._take()
            try:
                # The tokenizer is not safe to share between threads ("Already borrowed"), so the
                # chat template is applied here, in the model's thread. Members are ordered by seed
                # and text, so a batch's output does not depend on the order they arrived in.
                texts = [j.prompt if isinstance(j.prompt, str) else chat_prompt(self.lm, j.prompt) for j in batch]
                order = sorted(range(len(batch)), key=lambda i: (batch[i].params["seed"] or 0, texts[i]))
                seeds = [j.params["seed"] for j in batch if j.params["seed"] is not None]
                params = {**batch[0].params, "seed": min(seeds) if seeds else None}
                made = generate_batch(self.lm, [texts[i] for i in order], batch_size=len(batch), **params)
            except Exception as exc:
                for job in batch:
                    job.done.set_exception(exc)
                continue
            for i, choices in zip(order, made, strict=True):
                batch[i].done.set_result((choices, len(batch)))


def create_app(lm: Any, max_batch: int = 16, window: float = 0.02) -> Any:
    app = FastAPI(title="curate serve-lm")
    batcher = Batcher(lm, max_batch, window)
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

    async def answer(prompt: Any, body: dict[str, Any], response: Response, kind: str, choice: Any) -> Any:
        """Generate through the batcher and wrap the choices in OpenAI's envelope for ``kind``
        (or, with ``stream``, in its server-sent chunks)."""
        import anyio

        stream = bool(body.get("stream"))
        choices, size = await anyio.to_thread.run_sync(batcher.submit, prompt, sampling(body))
        envelope = {
            "id": f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex[:12]}",
            "object": kind,
            "created": int(time.time()),
            "model": body.get("model") or served,
        }
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = sse_events(envelope, kind, choices, usage(choices) if include_usage else None)
            return StreamingResponse(
                iter(events), media_type="text/event-stream", headers={"x-curate-batch-size": str(size)}
            )
        response.headers["x-curate-batch-size"] = str(size)
        return {
            **envelope,
            "choices": [{"index": i, **choice(c), "finish_reason": c.finish_reason} for i, c in enumerate(choices)],
            "usage": usage(choices),
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request, response: Response) -> dict[str, Any]:
        body = await json_body(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "content" in m for m in messages):
            raise HTTPException(400, "messages must be a list of {role, content}")
        prompt = [{"role": m.get("role", "user"), "content": str(m["content"])} for m in messages]
        return await answer(
            prompt, body, response, "chat.completion", lambda c: {"message": {"role": "assistant", "content": c.text}}
        )

    @app.post("/v1/completions")
    async def completions(request: Request, response: Response) -> dict[str, Any]:
        body = await json_body(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise HTTPException(400, "prompt must be a string")
        return await answer(prompt, body, response, "text_completion", lambda c: {"text": c.text, "logprobs": None})

    return app


def text_pieces(text: str) -> list[str]:
    """The answer cut into word-sized pieces (each with its leading space), as a stream sends it."""
    import re

    return re.findall(r"\s*\S+|\s+$", text) or [""]


def sse_events(envelope: dict[str, Any], kind: str, choices: list[Any], usage: dict[str, int] | None) -> list[str]:
    """OpenAI's streaming wire format for finished choices: ``data: {chunk}`` lines, then ``[DONE]``."""
    import json

    chat = kind == "chat.completion"
    head = {**envelope, "object": "chat.completion.chunk" if chat else "text_completion"}
    chunks: list[dict[str, Any]] = []
    for i, c in enumerate(choices):
        if chat:
            chunks.append({"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
        for piece in text_pieces(c.text):
            delta = {"delta": {"content": piece}} if chat else {"text": piece, "logprobs": None}
            chunks.append({"index": i, **delta, "finish_reason": None})
        end = {"delta": {}} if chat else {"text": "", "logprobs": None}
        chunks.append({"index": i, **end, "finish_reason": c.finish_reason})
    events = [{**head, "choices": [chunk]} for chunk in chunks]
    if usage is not None:
        events.append({**head, "choices": [], "usage": usage})
    return [f"data: {json.dumps(e)}\n\n" for e in events] + ["data: [DONE]\n\n"]


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model: str | None = None,
    device: str | None = None,
    max_batch: int = 16,
    window: float = 0.02,
) -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from curate.llm.lm import load_lm

    lm = load_lm(model, device=device)
    app = create_app(lm, max_batch, window)
    print(
        f"serving {lm.name} ({lm.path}, {lm.device}) at http://{host}:{port}/v1, batches of up to {max_batch}",
        flush=True,
    )
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

        root = str(Path(__file__).resolve().parents[2])
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
