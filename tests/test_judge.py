"""The LLM judge and the shared chat client against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.errors import CurateError
from curate.llm.chat import ChatClient, ChatRequest, ChatSettings, EndpointError
from curate.llm.server import free_port
from curate.run.directory import RunDir
from scorers.judge import load_prompt, parse_score
from tests.conftest import run_cli

MAX_TOKENS = "6"


@pytest.fixture(scope="module")
def alpaca_slice(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """Three real Alpaca records (one with an input) as a JSON file."""
    records = json.loads((data_dir / "alpaca_data.json").read_text())
    chosen = [records[0], records[1], next(r for r in records if r["input"])]
    path = tmp_path_factory.mktemp("judge") / "three.json"
    path.write_text(json.dumps(chosen))
    return path


def test_parse_score_cases() -> None:
    assert parse_score("4.5\nAccurate and complete.") == (4.5, "Accurate and complete.", None)
    assert parse_score("Score: 3\nsome reason")[0] == 3.0
    assert parse_score("**5**\nperfect")[0] == 5.0
    assert parse_score("The answer is fine.\nI would give it a score of 4.")[0] == 4.0
    assert parse_score("banana") == (None, "banana", "no_score")
    assert parse_score("17\nway off")[2] == "score_out_of_range"
    assert parse_score("   ")[2] == "empty_reply"


def test_prompts_load(data_dir: Path, tmp_path: Path) -> None:
    alpagasus = load_prompt("alpagasus")
    published = json.loads((data_dir / "alpagasus" / "rating_prompt.json").read_text())
    messages = alpagasus.messages("Add 2 and 2.", "", "4")
    assert messages[0]["content"] == published["system_prompt"]
    assert (
        messages[1]["content"]
        == published["triplet_template"].format(instruction="Add 2 and 2.", input="", output="4")
        + published["user_prompt_accuracy_used"]
    )
    assert "first line" in load_prompt("curate").question
    bad = tmp_path / "bad.json"
    bad.write_text('{"system_prompt": "x"}')
    with pytest.raises(CurateError, match="triplet_template"):
        load_prompt(str(bad))


def test_judge_cli_real_server_and_cache(lm_server, alpaca_slice: Path, tmp_path: Path) -> None:
    cache = tmp_path / "chat-cache"
    common = ["--base-url", lm_server.base_url, "--model", "smollm2", "--max-tokens", MAX_TOKENS, "--cache", str(cache)]
    first = run_cli("judge", str(alpaca_slice), "--out", str(tmp_path / "run1"), *common, "--price-in", "0.5")
    assert "3 records judged" in first.stdout and "3 requests" in first.stdout
    assert "annotations/judge.parquet" in first.stdout
    run = RunDir(tmp_path / "run1")
    notes = pl.read_parquet(run.annotations_path("judge"))
    assert notes.height == 3
    assert notes["judge_raw"].null_count() == 0
    assert ((notes["judge_score"].is_not_null()) ^ (notes["judge_error"].is_not_null())).all()
    assert (notes["judge_prompt_tokens"] > 0).all()
    stats = run.manifest()["stages"][-1]["stats"]
    assert stats["requests"] == 3 and stats["cost_usd"] > 0
    assert "api_key" not in json.dumps(run.manifest()).replace("api_key_env", "")
    column = run.annotation_column("judge_score")
    assert column.columns == ["id", "judge_score"] and column.equals(notes.select("id", "judge_score"))

    second = run_cli("judge", str(alpaca_slice), "--out", str(tmp_path / "run2"), *common)
    assert "0 requests" in second.stdout and "3 cache hits" in second.stdout
    again = pl.read_parquet(RunDir(tmp_path / "run2").annotations_path("judge"))
    assert again["judge_raw"].to_list() == notes["judge_raw"].to_list()


def test_faults_retried_and_nonsense_kept(fault_proxy, alpaca_slice: Path, tmp_path: Path) -> None:
    fault_proxy.plan = ["500", "429", "garbage", "nonsense", "400"]
    done = run_cli(
        "judge", str(alpaca_slice), "--out", str(tmp_path / "run"), "--base-url", fault_proxy.base_url,
        "--model", "smollm2", "--max-tokens", MAX_TOKENS, "--concurrency", "1", "--cache", str(tmp_path / "c"),
        "--limit", "2",
    )  # fmt: skip
    assert "(3 retries)" in done.stdout and "2 records judged" in done.stdout
    notes = pl.read_parquet(RunDir(tmp_path / "run").annotations_path("judge"))
    assert notes.height == 3
    nonsense = notes.filter(pl.col("judge_raw") == "banana")
    assert nonsense.height == 1 and nonsense["judge_error"][0] == "no_score" and nonsense["judge_score"][0] is None
    assert notes["judge_error"].to_list()[1:] == ["endpoint_refused", "not_judged"]
    assert "HTTP 400" in notes["judge_reason"][1]


def test_timeout_retried_then_dead_endpoint_named(fault_proxy, alpaca_slice: Path, tmp_path: Path) -> None:
    settings = ChatSettings(
        fault_proxy.base_url, "smollm2", timeout=5.0, retries=2, backoff=0.01, cache_dir=str(tmp_path)
    )
    fault_proxy.plan = ["slow"]
    with ChatClient(settings) as client:
        reply = client.complete(ChatRequest.chat([{"role": "user", "content": "Hi"}], max_tokens=2))
    assert reply.texts and client.usage.retries >= 1

    dead = f"http://127.0.0.1:{free_port()}/v1"
    client = ChatClient(ChatSettings(dead, "m", retries=1, backoff=0.01, use_cache=False))
    with pytest.raises(EndpointError, match=dead):
        client.complete(ChatRequest(prompt="x", max_tokens=1))
    failed = run_cli(
        "judge", str(alpaca_slice), "--out", str(tmp_path / "r"), "--base-url", dead, "--model", "m",
        "--retries", "1", check=False,
    )  # fmt: skip
    assert failed.returncode == 2 and dead in failed.stderr and "Traceback" not in failed.stderr
    assert not RunDir.is_run(tmp_path / "r")


def test_api_key_from_env_never_written(lm_server, alpaca_slice: Path, tmp_path: Path) -> None:
    secret = "sk-test-not-a-real-key-123"
    out = tmp_path / "run"
    done = run_cli(
        "judge", str(alpaca_slice), "--out", str(out), "--base-url", lm_server.base_url, "--model", "smollm2",
        "--max-tokens", MAX_TOKENS, "--limit", "1", "--api-key-env", "CURATE_TEST_KEY", "--cache", str(tmp_path / "c"),
        env={"CURATE_TEST_KEY": secret},
    )  # fmt: skip
    assert secret not in done.stdout + done.stderr
    for path in [*out.rglob("*"), *(tmp_path / "c").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    notes = pl.read_parquet(RunDir(out).annotations_path("judge"))
    assert notes["judge_error"].to_list()[1:] == ["not_judged", "not_judged"]
    missing = run_cli(
        "judge", str(alpaca_slice), "--out", str(tmp_path / "r2"), "--base-url", lm_server.base_url,
        "--model", "m", "--api-key-env", "CURATE_UNSET_KEY_VAR", check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and "CURATE_UNSET_KEY_VAR is not set" in missing.stderr
