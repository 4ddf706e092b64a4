"""The LoRA trainer: response-only loss masking, same seed -> same losses, resume after SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.errors import CurateError
from tests.conftest import ROOT, run_cli

TINY = ["--max-steps", "2", "--batch-size", "2", "--grad-accum", "1", "--max-len", "32", "--eval-n", "2"]
TINY += ["--limit", "8", "--save-every", "1", "--quiet"]


@pytest.fixture(scope="module")
def alpaca_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from curate.training.ablate import ci_source

    return ci_source(tmp_path_factory.mktemp("data"), progress=False)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from curate.llm.lm import resolve_lm

    return AutoTokenizer.from_pretrained(resolve_lm(None))


def test_loss_counts_response_tokens_only(tokenizer) -> None:
    import torch

    from curate.llm.lm import load_lm
    from curate.training.trainer import IGNORE, collate, encode, labels_for, prompt_and_response, response_loss_sum

    with_input = {"kind": "instruction", "instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
    without = {"kind": "instruction", "instruction": "Name a colour.", "input": "", "output": "Blue is a colour."}
    prompt, response = prompt_and_response(with_input, "alpaca", tokenizer)
    assert "### Input:\n2 and 3" in prompt and prompt.endswith("### Response:\n") and response == "5"
    prompt2, _ = prompt_and_response(without, "alpaca", tokenizer)
    assert "### Input" not in prompt2
    chat_prompt, _ = prompt_and_response(without, "chat", tokenizer)
    assert "Name a colour." in chat_prompt and chat_prompt.rstrip().endswith("assistant")

    examples = [encode(*prompt_and_response(r, "alpaca", tokenizer), tokenizer, 128) for r in (with_input, without)]
    for example, record in zip(examples, (with_input, without), strict=True):
        labels = labels_for(example)
        assert labels[: example.prompt_len] == [IGNORE] * example.prompt_len
        answer = [t for t in labels if t != IGNORE]
        assert tokenizer.decode(answer) == record["output"] + tokenizer.eos_token
    batch = collate(examples, tokenizer.pad_token_id or 0)
    short = min(range(2), key=lambda i: examples[i].length)
    pad = batch["attention_mask"][short] == 0
    assert pad.any() and (batch["labels"][short][pad] == IGNORE).all()

    # The summed loss over response tokens equals the model's own loss with these labels.
    lm = load_lm(None, device="cpu")
    with torch.no_grad():
        ours, count = response_loss_sum(lm.model, batch)
        reference = lm.model(**batch).loss
    assert count == sum(e.length - e.prompt_len for e in examples) - 0
    assert abs(float(ours) / count - float(reference)) < 1e-4


def test_long_prompts_keep_room_for_the_response(tokenizer) -> None:
    from curate.training.trainer import encode

    example = encode("word " * 500, "the answer " * 10, tokenizer, 64)
    assert example.length <= 64 and example.length - example.prompt_len >= 20


def test_batches_grouped_by_length_and_seeded() -> None:
    from curate.training.trainer import TrainConfig, batch_plan

    lengths = [(i * 37) % 200 + 5 for i in range(256)]
    grouped = TrainConfig(batch_size=8, seed=3, packing=False)
    plain = TrainConfig(batch_size=8, seed=3, group_by_length=False, packing=False)

    def padded(batches: list[list[int]]) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    a, b = batch_plan(lengths, grouped, 0), batch_plan(lengths, grouped, 0)
    assert a == b and a != batch_plan(lengths, grouped, 1)
    assert sorted(i for batch in a for i in batch) == list(range(256))
    assert padded(a) < 0.7 * padded(batch_plan(lengths, plain, 0))


def test_packed_micro_batches_keep_the_token_budget() -> None:
    from curate.training.trainer import TrainConfig, batch_plan, steps_tokens, token_budget

    lengths = [(i * 37) % 200 + 5 for i in range(256)]
    packed = TrainConfig(tokens_per_batch=700, grad_accum=2, seed=3)
    plan = batch_plan(lengths, packed, 0)
    assert plan == batch_plan(lengths, packed, 0) and plan != batch_plan(lengths, packed, 1)
    assert sorted(i for batch in plan for i in batch) == list(range(256))
    assert all(sum(lengths[i] for i in batch) <= 700 for batch in plan)
    # Full micro-batches: closing one leaves less room than the next example needs.
    assert sum(sum(lengths[i] for i in b) for b in plan[:-1]) / (700 * (len(plan) - 1)) > 0.8
    # Unset, the budget is batch_size x the mean length; a padded plan with a budget counts padding.
    assert token_budget(lengths, TrainConfig(batch_size=8)) == round(8 * sum(lengths) / 256)
    padded = batch_plan(lengths, TrainConfig(tokens_per_batch=700, packing=False), 0)
    assert all(len(b) * max(lengths[i] for i in b) <= 700 for b in padded if len(b) > 1)
    assert steps_tokens(lengths, packed, 1) == sum(lengths[i] for b in plan[:2] for i in b)
    with pytest.raises(CurateError, match="tokens-per-batch"):
        TrainConfig(tokens_per_batch=4)


def test_packed_step_equals_padded_step(alpaca_run: Path, tokenizer) -> None:
    """Packed (one flat row, positions restarting, attention per example) = padded one example per row."""
    import torch

    from curate.run.directory import RunDir
    from curate.training.trainer import (
        TrainConfig,
        build_model,
        encode,
        micro_batch,
        prompt_and_response,
        response_loss_sum,
    )

    records = list(RunDir(alpaca_run).records().head(5).iter_rows(named=True))
    examples = [encode(*prompt_and_response(r, "alpaca", tokenizer), tokenizer, 48) for r in records]
    examples.append(encode("", "Plain text trains on every token.", tokenizer, 48))
    assert len({e.length for e in examples}) > 1
    model, lm = build_model(TrainConfig(lora_dropout=0.0), "cpu")
    generator = torch.Generator().manual_seed(0)
    for name, weight in model.named_parameters():
        if "lora_B" in name:  # zero at init, which would leave lora_A without a gradient
            weight.data = torch.randn(weight.shape, generator=generator) * 0.02
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}

    def step(packed: bool) -> tuple[float, int, dict]:
        model.zero_grad()
        loss, count = response_loss_sum(model, micro_batch(examples, lm.tokenizer.pad_token_id, packed))
        (loss / count).backward()
        return float(loss.detach()) / count, count, {n: p.grad.clone() for n, p in lora.items()}

    padded_loss, padded_count, padded_grads = step(False)
    packed_loss, packed_count, packed_grads = step(True)
    assert packed_count == padded_count == sum(e.length - max(e.prompt_len, 1) for e in examples)
    assert abs(packed_loss - padded_loss) < 1e-5 * padded_loss
    scale = max(g.abs().max().item() for g in padded_grads.values())
    assert scale > 0 and all(g.abs().max().item() > 0 for g in padded_grads.values())
    for name, grad in padded_grads.items():
        assert torch.allclose(packed_grads[name], grad, atol=1e-5 * scale, rtol=1e-4), name
    # Packed steps borrow the attention implementation; padded batches get sdpa back.
    assert model.get_base_model().config._attn_implementation == "sdpa"


def test_same_seed_same_losses_and_resume_after_kill(alpaca_run: Path, tmp_path: Path) -> None:
    import torch

    first = run_cli("train", str(alpaca_run), "--out", str(tmp_path / "a"), *TINY)
    assert "eval on 2 AlpacaEval prompts" in first.stdout
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "a" / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert len(a["losses"]) == 2 and not (tmp_path / "a" / "checkpoint.pt").exists()

    # A second process with the same seed, killed once it has written its checkpoint after step 1:
    # its step-1 loss is the first run's, and the same command resumes and ends the same.
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "curate.cli", "train", str(alpaca_run), "--out", str(out), *TINY]
    victim = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert checkpoint.exists(), "the run ended before writing a checkpoint"
    state = torch.load(checkpoint, weights_only=False)
    assert state["step"] == 1 and state["losses"] == a["losses"][:1] and not (out / "metrics.json").exists()
    resumed = run_cli("train", str(alpaca_run), "--out", str(out), *TINY)
    assert "resumed from the checkpoint at step 1" in resumed.stdout
    c = json.loads((out / "metrics.json").read_text())
    assert c["losses"] == a["losses"] and c["eval"] == a["eval"]

    again = run_cli("train", str(alpaca_run), "--out", str(out), *TINY)
    assert "up to date" in again.stdout
