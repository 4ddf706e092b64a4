"""Evaluating a trained adapter by what it generates: batched greedy answers, cached, then IFEval.

* Prompts are formatted with the template the adapter was trained with (``prompt_and_response``
  and the ``template`` in its ``metrics.json``), left-padded into batches (prompts sorted by
  length, so batches hold similar lengths) and decoded greedily for at most ``max_new_tokens``.
* Every answer is appended to ``TRAIN_DIR/generations.jsonl`` as soon as its batch finishes,
  keyed by the adapter's fingerprint, the model, the template, ``max_new_tokens`` and the prompt.
  A rerun generates nothing already there; a killed evaluation resumes at the first unfinished
  batch. Batches are always cut from the full ordered prompt list, so a resumed run generates
  exactly what an uninterrupted one would.
* ``TRAIN_DIR/ifeval.json`` holds the IFEval accuracies and the per-prompt results beside the
  trainer's ``metrics.json``; the generations file is the readable answers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import CurateError

GENERATIONS = "generations.jsonl"
IFEVAL_RESULTS = "ifeval.json"


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise CurateError("max_new_tokens and batch_size must be at least 1")


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def read_generations(path: Path) -> dict[str, dict[str, Any]]:
    """The cached answers by key; a torn last line (a kill mid-write) is ignored."""
    found: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "key" in row:
            found[row["key"]] = row
    return found


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with path.open("a", encoding="utf-8") as out:
        if out.tell() and not _ends_with_newline(path):
            out.write("\n")
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def adapter_generations(
    train_dir: str | Path,
    instructions: Sequence[str],
    settings: GenerationSettings = GenerationSettings(),
    device: str | None = None,
    progress: bool = True,
) -> list[str]:
    """Greedy answers of a ``curate train`` output to ``instructions``, cached in its generations file."""
    from transformers import AutoTokenizer

    from curate.llm.lm import resolve_lm
    from curate.training.trainer import TrainConfig, prompt_and_response

    train_dir = Path(train_dir)
    metrics_file = train_dir / "metrics.json"
    if not metrics_file.is_file() or not (train_dir / "adapter").is_dir():
        raise CurateError(f"{train_dir} has no finished training (metrics.json and adapter/); train it first")
    metrics = json.loads(metrics_file.read_text())
    config = TrainConfig(**metrics["config"])
    tokenizer = AutoTokenizer.from_pretrained(resolve_lm(config.model))
    prompts = [prompt_and_response({"instruction": i}, config.template, tokenizer)[0] for i in instructions]
    identity = (metrics["fingerprint"], metrics.get("model"), config.template, settings.max_new_tokens)
    keys = [_key(*identity, p) for p in prompts]
    cache_file = train_dir / GENERATIONS
    cached = read_generations(cache_file)
    todo = _batches_to_generate(prompts, keys, cached, settings.batch_size)
    if todo:
        generate = _generator(str(train_dir / "adapter"), config.model, device)
        from curate.run.progress import Progress

        bar = Progress(f"generate {train_dir.name}", "prompts", total=sum(len(b) for b in todo), enabled=progress)
        for batch in todo:
            texts = generate([prompts[i] for i in batch], settings.max_new_tokens)
            rows = [
                {
                    "key": keys[i],
                    "instruction": instructions[i],
                    "max_new_tokens": settings.max_new_tokens,
                    "template": config.template,
                    "response": text,
                }
                for i, text in zip(batch, texts, strict=True)
            ]
            _append(cache_file, rows)
            cached.update({r["key"]: r for r in rows})
            bar.advance(len(batch))
        bar.close()
    return [cached[k]["response"] for k in keys]


def _batches_to_generate(
    prompts: list[str], keys: list[str], cached: dict[str, Any], batch_size: int
) -> list[list[int]]:
    """Batches (prompt positions, longest first) with any answer missing; always cut the same way."""
    order = sorted(range(len(prompts)), key=lambda i: (-len(prompts[i]), keys[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if any(keys[i] not in cached for i in b)]


def _generator(adapter_dir: str, model: str | None, device: str | None):
    """A function from formatted prompts to greedy answers: the base model with the adapter merged
    into its weights (generation then costs what the base model's does)."""
    from dataclasses import replace

    from peft import PeftModel

    from curate.llm.generate import generate_batch
    from curate.llm.lm import load_lm

    lm = load_lm(model, device=device)
    tuned = replace(lm, model=PeftModel.from_pretrained(lm.model, adapter_dir).merge_and_unload().eval())

    def generate(prompts: list[str], max_new_tokens: int) -> list[str]:
        out = generate_batch(tuned, prompts, max_tokens=max_new_tokens, batch_size=len(prompts))
        return [g[0].text.strip() for g in out]

    return generate


def evaluate_ifeval(
    train_dir: str | Path,
    n: int | None = None,
    settings: GenerationSettings = GenerationSettings(),
    device: str | None = None,
    progress: bool = True,
    prompts_file: str | Path | None = None,
) -> dict[str, Any]:
    """IFEval accuracies of a trained adapter on ``n`` prompts (a fixed subset; all 541 by default),
    written to ``TRAIN_DIR/ifeval.json``."""
    from curate.io.atomic import write_json
    from curate.training import ifeval

    prompts = ifeval.load_prompts(prompts_file, n)
    responses = adapter_generations(train_dir, [p.prompt for p in prompts], settings, device, progress)
    result = ifeval.score(prompts, responses)
    result = {
        "benchmark": "IFEval (Zhou et al. 2023), lm-eval checkers",
        "max_new_tokens": settings.max_new_tokens,
        "subset": "all" if n is None or n >= 541 else f"{n} prompts, seeded order 0 over keys",
        **result,
    }
    write_json(Path(train_dir) / IFEVAL_RESULTS, result, durable=False)
    return result
