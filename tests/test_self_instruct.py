"""Self-instruct: parsing, filters, ROUGE-L equality, and the real loop against a real local server."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from curate.run.directory import RunDir
from curate.synth.rouge import TokenCodes, nearest, rouge_l_matrix
from curate.synth.self_instruct import (
    Generation,
    SelfInstructConfig,
    encode_prompt,
    grow,
    parse_tasks,
    rule_reason,
    sampling_for,
)
from tests.conftest import ROOT, run_cli

TINY = ["--n", "2", "--requests-per-round", "2", "--examples", "1", "--max-tokens", "24", "--no-embedding"]


def test_rouge_equals_rouge_score_on_real_pairs(data_dir: Path) -> None:
    from rouge_score import rouge_scorer

    records = json.loads((data_dir / "alpaca_data.json").read_text())
    seeds = [json.loads(line)["instruction"] for line in (data_dir / "alpaca_seed_tasks.jsonl").open()]
    rng = random.Random(7)
    targets = [*rng.sample([r["instruction"] for r in records], 40), "", "!!!", seeds[3]]
    pool = [*seeds[:60], records[0]["instruction"], "Give three tips for staying healthy!", "ÉTÉ café"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    expected = np.array([[scorer.score(t, p)["rougeL"].fmeasure for p in pool] for t in targets])
    codes = TokenCodes()
    got = rouge_l_matrix(codes.encode_texts(targets), codes.encode_texts(pool))
    assert np.array_equal(got, expected)
    assert got.max() == 1.0 and (got > 0.3).sum() > 0
    best, where = nearest(codes.encode_texts(targets), codes.encode_texts(pool))
    assert np.array_equal(best, expected.max(axis=1)) and np.array_equal(where, expected.argmax(axis=1))


def test_parse_tolerates_drift_missing_input_and_truncation() -> None:
    text = (
        " Name three primary colors.\n4. Input:\n<noinput>\n4. Output:\nRed, blue and yellow.\n###\n"
        "7. Instruction: Translate the sentence to French.\n7. Input:\nGood morning.\n7. Output:\nBonjour.\n###\n"
        "Instruction: Summarize the plot of Hamlet in one sentence.\nOutput: A prince avenges his father.\n###\n"
        "9. Instruction: Explain photosynthesis.\n9. Input:\n"
    )
    items = parse_tasks(text, 4, "length")
    assert [i.instruction for i in items] == [
        "Name three primary colors.",
        "Translate the sentence to French.",
        "Summarize the plot of Hamlet in one sentence.",
        "Explain photosynthesis.",
    ]
    assert [i.input for i in items[:3]] == ["", "Good morning.", ""]
    assert [i.problem for i in items] == [None, None, None, "truncated"]
    assert parse_tasks("Sorry, I cannot help with that.", 4, "stop", continued=False) == []
    assert parse_tasks("4. Instruction: Do X now please.\n", 4, "stop")[0].problem == "missing_output"


def test_sampling_defaults_by_backend_and_explicit_values_win() -> None:
    assert sampling_for("local") == {"temperature": 0.7, "top_p": 0.9, "max_tokens": 256}
    assert sampling_for("openai") == {"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072}
    assert sampling_for("local", temperature=0.0, max_tokens=24) == {"temperature": 0.0, "top_p": 0.9, "max_tokens": 24}
    assert sampling_for("scripted")["temperature"] == 1.0


def test_rule_filters_name_their_reason() -> None:
    config = SelfInstructConfig()
    cases = {
        "Hi there": "too_short",
        " ".join(["word"] * 151): "too_long",
        "Draw a picture of a cat on a mat.": "blacklist",
        "Write a program that sorts a list.": "write_a_program",
        "1) List the planets in order.": "non_letter_start",
        "¿Cuál es la capital de Francia hoy?": "non_letter_start",
        "List the planets of the solar system in order.": None,
    }
    for instruction, reason in cases.items():
        assert rule_reason(instruction, config)[0] == reason, instruction


class ScriptedGenerator:
    """Replies as a strong hosted model would write them (a 135M model rarely does), to drive the
    accept path deterministically; the real backends are tested below against the real model."""

    model = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, prompts, seeds, config):
        self.calls += len(prompts)
        reply = (
            " Name three primary colors.\n{k}. Input:\n<noinput>\n{k}. Output:\nRed, blue, yellow.\n###\n"
            "{k1}. Instruction: Name three primary colours.\n{k1}. Input:\n<noinput>\n{k1}. Output:\nRed.\n###\n"
            "{k2}. Instruction: Draw a map of Europe.\n{k2}. Input:\n<noinput>\n{k2}. Output:\nNo.\n###\n"
            "{k3}. Instruction: {task}\n{k3}. Output:\nCrumbs.\n"
        )
        k = config.examples + 1
        return [
            Generation(reply.format(k=k, k1=k + 1, k2=k + 2, k3=k + 3, task=self.TASKS[s % 5]), "stop", 10, 50)
            for s in seeds
        ]

    def usage(self):
        return {"requests": self.calls}

    TASKS = [
        "Suggest a catchy name for a small bakery.",
        "Convert 100 degrees Fahrenheit to Celsius.",
        "Is a tomato a fruit or a vegetable?",
        "Rewrite the given sentence in the passive voice.",
        "Classify the animal as mammal, bird or fish.",
    ]


def test_loop_accepts_and_rejects_with_reasons(tmp_path: Path) -> None:
    config = SelfInstructConfig(n=3, requests_per_round=2, examples=2, embedding_threshold=None)
    generator = ScriptedGenerator()
    manifest, stats = grow("alpaca-seed-tasks", generator, config, tmp_path / "run", "scripted", progress=False)
    run = RunDir(tmp_path / "run")
    kept = run.records()
    assert kept.height == 3 and stats["stopped_by"] == "n_reached"
    assert kept["instruction"][0] == "Name three primary colors."
    rejects = pl.read_parquet(run.rejects_path("self_instruct"))
    reasons = set(rejects["reason"].to_list())
    assert {"rouge_similar", "blacklist"} <= reasons
    assert manifest["records"]["in"] == kept.height + rejects.height
    meta = json.loads(kept["meta"][0])
    assert meta["generator_model"] == "scripted" and meta["round"] == 1 and len(meta["seed_task_ids"]) == 2
    assert 0 <= meta["rouge_l_nearest"] < 0.7 and meta["rouge_l_nearest_id"].startswith("seed_task_")
    similar = rejects.filter(pl.col("reason") == "rouge_similar")["detail"][0]
    assert "ROUGE-L" in similar and "r0001-q000-t00" in similar
    assert not (tmp_path / "run" / ".checkpoints").exists()


def test_incomplete_items_keep_what_the_model_wrote(tmp_path: Path) -> None:
    class CutOff(ScriptedGenerator):
        def generate(self, prompts, seeds, config):
            k = config.examples + 1
            reply = (
                f" Name three primary colors.\n{k}. Output:\nRed, blue, yellow.\n###\n{k + 1}. Output:\nBlue.\n###\n"
            )
            return [Generation(reply + f"{k + 2}. Instruction:", "length", 10, 30) for _ in prompts]

    config = SelfInstructConfig(n=5, requests_per_round=1, examples=1, embedding_threshold=None, max_rounds=1)
    grow("alpaca-seed-tasks", CutOff(), config, tmp_path / "run", "scripted", progress=False)
    rejects = pl.read_parquet(RunDir(tmp_path / "run").rejects_path("self_instruct"))
    texts = dict(zip(rejects["reason"], rejects["text"], strict=True))
    assert set(texts) == {"missing_instruction", "truncated"}
    assert texts["missing_instruction"].startswith("3. Output:") and "Blue." in texts["missing_instruction"]
    assert texts["truncated"] == "4. Instruction:"
    assert RunDir(tmp_path / "run").records()["text"][0].startswith("Name three primary colors.")


def test_openai_backend_real_server_cache_and_faults(lm_server, fault_proxy, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    args = ["self-instruct", "--seeds", "alpaca-seed-tasks", "--backend", "openai", "--api", "completions"]
    args += ["--model", "smollm2", "--max-rounds", "1", "--cache", cache, "--timeout", "600", *TINY]
    fault_proxy.plan = ["500", "garbage"]
    first = run_cli(*args, "--out", str(tmp_path / "a"), "--base-url", fault_proxy.base_url)
    assert "2 requests" in first.stdout and "stopped by" in first.stdout
    manifest = RunDir(tmp_path / "a").manifest()
    stage = manifest["stages"][-1]
    assert stage["in"] == stage["kept"] + stage["rejected"] and stage["in"] >= 2
    assert stage["stats"]["generator"]["retries"] >= 2  # the 500 and the garbage (a loaded CPU may add timeouts)
    again = run_cli(*args, "--out", str(tmp_path / "b"), "--base-url", lm_server.base_url)
    assert "0 sent, 2 from the reply cache" in again.stdout
    a, b = RunDir(tmp_path / "a"), RunDir(tmp_path / "b")
    files = [p.relative_to(a.root) for p in [*a.data_files(), a.rejects_path("self_instruct")]]
    assert [p.relative_to(b.root) for p in [*b.data_files(), b.rejects_path("self_instruct")]] == files
    for name in files:
        assert (a.root / name).read_bytes() == (b.root / name).read_bytes(), name


def test_local_backend_in_process(tmp_path: Path) -> None:
    done = run_cli(
        "self-instruct", "--backend", "local", "--out", str(tmp_path / "run"), "--max-rounds", "1",
        "--cache", str(tmp_path / "cache"), "--batch-size", "2", *TINY, "--requests-per-round", "1",
    )  # fmt: skip
    assert "candidates" in done.stdout
    manifest = RunDir(tmp_path / "run").manifest()
    stage = manifest["stages"][-1]
    assert stage["stats"]["generator"]["requests"] == 1
    assert stage["in"] == stage["kept"] + stage["rejected"]
    config = stage["params"]["config"]
    assert (config["temperature"], config["top_p"], config["max_tokens"]) == (0.7, 0.9, 24)


def test_kill_mid_run_and_resume(lm_server, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    out = tmp_path / "run"
    args = [sys.executable, "-m", "curate.cli", "self-instruct", "--backend", "openai", "--api", "completions"]
    args += ["--base-url", lm_server.base_url, "--model", "smollm2", "--max-rounds", "2", "--cache", cache, *TINY]
    args[args.index("--n") + 1] = "50"
    args[args.index("--requests-per-round") + 1] = "1"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [*args, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    first_round = out / ".checkpoints" / "self-instruct" / "round-0001.parquet"
    deadline = time.monotonic() + 300
    while not first_round.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first_round.exists(), child.stderr.read().decode() if child.poll() is not None else "round 1 never finished"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not RunDir.is_run(out)
    resumed = subprocess.run([*args, "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr and "after round 1" in resumed.stderr
    fresh = subprocess.run([*args, "--out", str(tmp_path / "fresh")], cwd=ROOT, env=env, capture_output=True, text=True)
    assert "0 sent" in fresh.stdout
    for name in ("rejects/self_instruct.parquet", "annotations/self_instruct.parquet"):
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes(), name
    assert RunDir(out).manifest()["stages"][-1]["stats"]["rounds"] == 2


def test_prompt_is_alpaca_style() -> None:
    tasks = [{"instruction": "Add the numbers.", "input": "2, 3", "output": "5"}]
    prompt = encode_prompt(tasks, 20)
    assert prompt.startswith("You are asked to come up with a set of 20 diverse task instructions.")
    assert "###\n1. Instruction: Add the numbers.\n1. Input:\n2, 3\n1. Output:\n5\n###\n2. Instruction:" in prompt


def test_embedding_novelty_rejects_paraphrase(tmp_path: Path) -> None:
    from curate.synth.self_instruct import NoveltyEmbedder

    class Paraphrases(ScriptedGenerator):
        def generate(self, prompts, seeds, config):
            k = config.examples + 1
            reply = (
                " Name three primary colors.\n{k}. Output:\nRed, blue, yellow.\n###\n"
                "{k1}. Instruction: What are the three primary colors?\n{k1}. Output:\nRed, blue and yellow.\n"
            )
            return [Generation(reply.format(k=k, k1=k + 1), "stop", 10, 30) for _ in prompts]

    config = SelfInstructConfig(n=5, requests_per_round=1, examples=1, embedding_threshold=0.8, max_rounds=1)
    grow("alpaca-seed-tasks", Paraphrases(), config, tmp_path / "run", "scripted", NoveltyEmbedder())
    rejects = pl.read_parquet(RunDir(tmp_path / "run").rejects_path("self_instruct"))
    assert rejects["reason"].to_list() == ["embedding_similar"], rejects.select("instruction", "reason", "detail")
    assert "cosine" in rejects["detail"][0] and "r0001-q000-t00" in rejects["detail"][0]
    kept = RunDir(tmp_path / "run").records()
    assert json.loads(kept["meta"][0])["embedding_nearest_cosine"] < 0.8
