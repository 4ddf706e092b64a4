"""A client for OpenAI-compatible chat and text completion endpoints, shared by the LLM judge,
self-instruct and the trainer's pairwise judge.

Calls cost money and time, so every reply is cached on disk under the sha256 of what determines
it (endpoint kind, model, messages or prompt, sampling parameters, seed): a rerun, or a run
resumed after a crash, sends nothing already answered. Transient failures (429, 5xx, timeouts,
refused connections, bodies that are not a completion) are retried with exponential backoff and
a jitter that is a function of the request, so two runs wait the same way. The API key is read
from an environment variable whose *name* is configured; the key itself is never stored,
logged or put into an error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import CurateError
from curate.io.atomic import write_bytes

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
# The endpoint refused this one request (too long, malformed): kept as the reply's error, the run goes on.
# Any other 4xx (bad key, wrong URL or model) stops the run with the URL and the server's message.
REQUEST_ERRORS = frozenset({400, 413, 422})
CACHE_FORMAT = "curate-chat/1"


class EndpointError(CurateError):
    """The endpoint could not answer a request, even after retries."""


def default_cache_dir() -> Path:
    """``$CURATE_CHAT_CACHE`` or ``~/.cache/curate/chat``."""
    return Path(os.environ.get("CURATE_CHAT_CACHE") or Path.home() / ".cache" / "curate" / "chat")


@dataclass(frozen=True)
class ChatSettings:
    """Where to send requests and how patiently.

    ``api_key_env`` names the environment variable that holds the key (none: no auth header).
    Prices are per one million tokens; without them cost is reported as unknown.
    """

    base_url: str
    model: str
    api_key_env: str | None = None
    concurrency: int = 4
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    cache_dir: str | None = None
    use_cache: bool = True
    price_in: float | None = None
    price_out: float | None = None

    def public(self) -> dict[str, Any]:
        """What a manifest may record: everything but secrets (there are none here, only the variable's name)."""
        return {
            "base_url": self.base_url,
            "model": self.model,
            "api_key_env": self.api_key_env,
            "concurrency": self.concurrency,
            "timeout": self.timeout,
            "retries": self.retries,
            "price_in": self.price_in,
            "price_out": self.price_out,
        }


@dataclass(frozen=True)
class ChatRequest:
    """One request: ``messages`` for chat/completions, or ``prompt`` for (text) completions."""

    messages: tuple[tuple[str, str], ...] | None = None
    prompt: str | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    n: int = 1
    stop: tuple[str, ...] | None = None

    @classmethod
    def chat(cls, messages: Sequence[dict[str, str]], **sampling: Any) -> ChatRequest:
        return cls(messages=tuple((m["role"], m["content"]) for m in messages), **sampling)

    @property
    def endpoint(self) -> str:
        return "chat/completions" if self.messages is not None else "completions"

    def payload(self, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model}
        if self.messages is not None:
            body["messages"] = [{"role": role, "content": content} for role, content in self.messages]
        else:
            body["prompt"] = self.prompt
        body.update(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens, n=self.n)
        if self.seed is not None:
            body["seed"] = self.seed
        if self.stop:
            body["stop"] = list(self.stop)
        return body

    def key(self, model: str) -> str:
        """sha256 of everything that determines the reply."""
        blob = json.dumps({"endpoint": self.endpoint, **self.payload(model)}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class ChatReply:
    """The choices' texts with their finish reasons, token counts, and whether it came from the cache.

    ``error`` is set (and ``texts`` empty) when the endpoint answered with something that is not
    a completion even after retries; callers keep such rows with the error as the reason.
    """

    texts: list[str]
    finish_reasons: list[str | None]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None

    @property
    def text(self) -> str | None:
        return self.texts[0] if self.texts else None


@dataclass
class Usage:
    """Running totals of one client; ``prompt_tokens``/``completion_tokens`` count only new (billed) calls."""

    requests: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: float) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def cost(self, price_in: float | None, price_out: float | None) -> float | None:
        """Dollars for the new tokens at per-1M-token prices, or None without prices."""
        if price_in is None and price_out is None:
            return None
        return round(
            self.prompt_tokens * (price_in or 0.0) / 1e6 + self.completion_tokens * (price_out or 0.0) / 1e6, 6
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _jitter(key: str, attempt: int) -> float:
    """A fraction in [0, 1) fixed by the request and the attempt: reproducible waits."""
    return int(hashlib.sha256(f"{key}:{attempt}".encode()).hexdigest()[:8], 16) / 2**32


class ReplyCache:
    """One JSON file per request key under ``root/ab/abcdef....json``, written atomically."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return entry if entry.get("format") == CACHE_FORMAT else None

    def put(self, key: str, request: dict[str, Any], reply: ChatReply) -> None:
        entry = {
            "format": CACHE_FORMAT,
            "request": request,
            "texts": reply.texts,
            "finish_reasons": reply.finish_reasons,
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
        }
        write_bytes(self.path(key), json.dumps(entry, ensure_ascii=False).encode())


def reply_from_cache(entry: dict[str, Any]) -> ChatReply:
    return ChatReply(
        texts=list(entry["texts"]),
        finish_reasons=list(entry["finish_reasons"]),
        prompt_tokens=int(entry.get("prompt_tokens", 0)),
        completion_tokens=int(entry.get("completion_tokens", 0)),
        cached=True,
    )


class _Retry(Exception):
    def __init__(self, why: str, wait: float | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.wait = wait


class ChatClient:
    """Sends :class:`ChatRequest` s to one endpoint and model, ``concurrency`` at a time."""

    def __init__(self, settings: ChatSettings, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        self.settings = settings
        self.usage = Usage()
        self.cache = ReplyCache(settings.cache_dir or default_cache_dir()) if settings.use_cache else None
        self._sleep = sleep
        headers = {"Content-Type": "application/json"}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise CurateError(f"the API key variable {settings.api_key_env} is not set in the environment")
            headers["Authorization"] = f"Bearer {key}"
        self.base_url = settings.base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 10.0)),
            headers=headers,
            limits=httpx.Limits(max_connections=max(settings.concurrency, 1)),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> str:
        return self.settings.model

    def cost(self) -> float | None:
        return self.usage.cost(self.settings.price_in, self.settings.price_out)

    def complete_many(self, requests: Sequence[ChatRequest], progress: Callable[[int], None] | None = None) -> list:
        """Replies in the order of ``requests``; cached ones without a call, the rest concurrently."""
        replies: list[ChatReply | None] = [None] * len(requests)
        todo = []
        for i, request in enumerate(requests):
            key = request.key(self.model)
            entry = self.cache.get(key) if self.cache else None
            if entry is not None:
                replies[i] = reply_from_cache(entry)
                self.usage.add(cache_hits=1)
                if progress:
                    progress(1)
            else:
                todo.append((i, request, key))

        def one(item: tuple[int, ChatRequest, str]) -> tuple[int, ChatReply]:
            i, request, key = item
            reply = self._send(request, key)
            if progress:
                progress(1)
            return i, reply

        if todo:
            workers = max(1, min(self.settings.concurrency, len(todo)))
            with ThreadPoolExecutor(workers) as pool:
                for i, reply in pool.map(one, todo):
                    replies[i] = reply
        return replies

    def complete(self, request: ChatRequest) -> ChatReply:
        return self.complete_many([request])[0]

    def _send(self, request: ChatRequest, key: str) -> ChatReply:
        import httpx

        url = f"{self.base_url}/{request.endpoint}"
        body = request.payload(self.model)
        last = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                self.usage.add(retries=1)
            started = time.monotonic()
            try:
                response = self._http.post(url, json=body)
                reply = self._parse(response)
            except _Retry as retry:
                last = retry.why
                wait = retry.wait
            except httpx.TimeoutException:
                last = f"timed out after {self.settings.timeout:g} s"
                wait = None
            except httpx.TransportError as exc:
                last = f"connection failed ({type(exc).__name__})"
                wait = None
            else:
                self.usage.add(
                    requests=1,
                    prompt_tokens=reply.prompt_tokens,
                    completion_tokens=reply.completion_tokens,
                    seconds=time.monotonic() - started,
                )
                if reply.error is None and self.cache is not None:
                    self.cache.put(key, body, reply)
                return reply
            if attempt < self.settings.retries:
                delay = min(self.settings.max_backoff, self.settings.backoff * 2**attempt)
                delay *= 1.0 + 0.5 * _jitter(key, attempt)
                self._sleep(wait if wait is not None and wait <= self.settings.max_backoff else delay)
        self.usage.add(failures=1)
        if last.startswith("garbage"):
            return ChatReply(texts=[], finish_reasons=[], error=last)
        raise EndpointError(
            f"{url}: no usable answer after {self.settings.retries + 1} attempts (last: {last}); "
            "is the server running and the base URL right?"
        )

    def _parse(self, response: Any) -> ChatReply:
        status = response.status_code
        if status in RETRY_STATUS:
            after = response.headers.get("retry-after")
            try:
                wait = float(after) if after is not None else None
            except ValueError:
                wait = None
            raise _Retry(f"HTTP {status}", wait)
        if status >= 400:
            detail = response.text[:300].replace("\n", " ")
            if status in REQUEST_ERRORS:
                return ChatReply(texts=[], finish_reasons=[], error=f"HTTP {status}: {detail}")
            raise EndpointError(f"{response.request.url}: HTTP {status}: {detail}")
        try:
            data = response.json()
            choices = data["choices"]
            texts = [c["message"]["content"] if "message" in c else c["text"] for c in choices]
            if not texts or not all(isinstance(t, str) for t in texts):
                raise TypeError("no text in choices")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _Retry(f"garbage reply ({type(exc).__name__}: {response.text[:120]!r})") from None
        usage = data.get("usage") or {}
        return ChatReply(
            texts=texts,
            finish_reasons=[c.get("finish_reason") for c in choices],
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
