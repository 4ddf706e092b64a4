"""curate serve-lm: the OpenAI-compatible endpoints of the local LM, and the self-instruct deployment."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from tests.conftest import ROOT


def test_models_chat_completions_usage_and_seeds(lm_server) -> None:
    base = lm_server.base_url
    models = httpx.get(f"{base}/models", timeout=30).json()
    assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
    chat = {"messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 2, "temperature": 0}
    first = httpx.post(f"{base}/chat/completions", json=chat, timeout=120).json()
    again = httpx.post(f"{base}/chat/completions", json=chat, timeout=120).json()
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]
    assert first["usage"]["prompt_tokens"] > 5 and 0 < first["usage"]["completion_tokens"] <= 2
    sampled = {"prompt": "Once upon a time", "max_tokens": 2, "temperature": 0.9, "seed": 3, "n": 2}
    one = httpx.post(f"{base}/completions", json=sampled, timeout=120).json()
    two = httpx.post(f"{base}/completions", json=sampled, timeout=120).json()
    assert len(one["choices"]) == 2 and [c["text"] for c in one["choices"]] == [c["text"] for c in two["choices"]]
    assert one["choices"][0]["finish_reason"] in ("length", "stop")
    bad = httpx.post(f"{base}/chat/completions", content=b"not json", timeout=30)
    assert bad.status_code == 400


def test_concurrent_requests_share_a_batch(lm_server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    base = lm_server.base_url
    prompts = [f"List {k} fruits:" for k in ("two", "three", "four", "five", "six", "seven")]

    def ask(prompt: str) -> httpx.Response:
        return httpx.post(
            f"{base}/completions", json={"prompt": prompt, "max_tokens": 2, "temperature": 0}, timeout=300
        )

    with ThreadPoolExecutor(len(prompts)) as pool:
        replies = list(pool.map(ask, prompts))
    assert all(r.status_code == 200 and len(r.json()["choices"]) == 1 for r in replies)
    sizes = [int(r.headers["x-curate-batch-size"]) for r in replies]
    # The first request may run alone; those that arrive while it runs are generated together.
    assert max(sizes) >= 2, sizes
    other = {"prompt": "Hi", "max_tokens": 1, "temperature": 0}
    assert httpx.post(f"{base}/completions", json=other, timeout=120).headers["x-curate-batch-size"] == "1"


def test_self_instruct_deployment_entry() -> None:
    spec = yaml.safe_load(Path(ROOT / "prefect.yaml").read_text())
    entry = next(d for d in spec["deployments"] if d["name"] == "self-instruct")
    assert entry["entrypoint"] == "flows/self_instruct.py:self_instruct"
    assert entry["parameters"]["seeds"] == "alpaca-seed-tasks"
    source = (ROOT / "flows" / "self_instruct.py").read_text()
    assert '@flow(name="self-instruct"' in source


def test_the_official_openai_client_streams_chat_and_text(lm_server) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=lm_server.base_url, api_key="unused", timeout=120)
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct"]
    messages = [{"role": "user", "content": "Name three colors."}]
    whole = client.chat.completions.create(model="m", messages=messages, max_tokens=12, temperature=0)
    streamed = client.chat.completions.create(
        model="m", messages=messages, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}
    )
    pieces, finish, usage = [], None, None
    for chunk in streamed:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    text = whole.choices[0].message.content
    assert text and "".join(pieces) == text and len([p for p in pieces if p]) > 1
    assert finish == whole.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens

    plain = client.completions.create(model="m", prompt="The sky is", max_tokens=8, temperature=0)
    chunks = list(client.completions.create(model="m", prompt="The sky is", max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == plain.choices[0].finish_reason
