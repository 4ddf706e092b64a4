"""The bundled LoRA trainer: a run directory's shards in, an adapter, metrics and a loss curve out.

Why a small loop of our own rather than the Hugging Face ``Trainer``: the ablations need the
same loss curve for the same arm and seed, an exact resume after a kill, and batches grouped by
length so short examples are not padded to the longest of a random batch (see
``benchmarks/train.py`` for the throughput against the plain ``Trainer``).

* Prompts: the Alpaca template (with or without input) or the model's chat template; the loss
  counts response tokens only (prompt and padding are labelled ``-100``).
* Batches (default): examples shuffled by seed and epoch are packed whole into micro-batches
  of at most ``tokens_per_batch`` tokens, one flat row with positions restarting per example and
  attention confined to each example (``curate.training.packing``): no padding, and arms of
  different lengths get the same tokens per step. Without packing: sorted by length inside
  mega-batches, cut into micro-batches padded to their longest (by row count, or by the token
  budget counting padding), and the micro-batches shuffled again.
* Optimisation: AdamW on the LoRA weights (fused on CUDA, foreach on CPU), cosine schedule with
  warmup, gradient accumulation with the loss averaged over every response token of the step,
  bf16 autocast on GPUs that support it. The step loop never waits for the device: batches are
  built on the host one step ahead, the loss positions are host-side indices, and the losses are
  read in bulk at checkpoints.
* Seeding: Python, numpy and torch, and the data order is a pure function of (seed, epoch).
* Checkpoints (``TRAIN_DIR/checkpoint.pt``, atomic) hold the LoRA weights, optimizer,
  scheduler, RNG states and losses; rerunning the same command resumes from the last one.

Outputs: ``TRAIN_DIR/adapter/`` (peft), ``TRAIN_DIR/metrics.json``, ``TRAIN_DIR/loss_curve.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import CurateError
from curate.io.atomic import TMP_MARK, atomic_path, clean_partial, write_json
from curate.run.directory import claim_folder
from curate.run.progress import Progress

IGNORE = -100
CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
ADAPTER = "adapter"
LOSS_CURVE = "loss_curve.png"
EVAL_DATASET = "alpaca-eval"

ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained adapter (and so the checkpoint's fingerprint).

    ``max_steps`` (optimizer steps) wins over ``epochs``; with it the data cycles epoch after epoch.
    ``tokens_per_batch`` caps the real tokens of a packed micro-batch (padded: rows x longest);
    unset, packing uses ``batch_size`` x the mean example length, so a step holds as many examples
    on average as a padded one of ``batch_size`` rows, and padding without packing counts rows.
    """

    model: str | None = None
    template: str = "alpaca"
    max_len: int = 512
    batch_size: int = 8
    grad_accum: int = 2
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    epochs: float = 1.0
    max_steps: int | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    seed: int = 0
    group_by_length: bool = True
    mega_batches: int = 32
    eval_n: int | None = 805
    limit: int | None = None
    packing: bool = True
    tokens_per_batch: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.template not in ("alpaca", "chat"):
            raise CurateError(f"unknown prompt template {self.template!r} (alpaca or chat)")
        if self.max_len < 8 or self.batch_size < 1 or self.grad_accum < 1:
            raise CurateError("--max-len must be at least 8, --batch-size and --grad-accum at least 1")
        if self.tokens_per_batch is not None and self.tokens_per_batch < 8:
            raise CurateError("--tokens-per-batch must be at least 8")
        if self.max_steps is None and self.epochs <= 0:
            raise CurateError("--epochs must be positive (or give --max-steps)")
        object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def as_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["target_modules"] = list(self.target_modules)
        return values


@dataclass
class Example:
    ids: list[int]
    prompt_len: int

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    resumed_from: int = 0
    up_to_date: bool = False
    losses: list[float] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def prompt_and_response(record: dict[str, Any], template: str, tokenizer: Any) -> tuple[str, str]:
    """The prompt (no loss) and the response (loss) of one record.

    Chats with several turns under the chat template: every turn before the last assistant turn
    is prompt. Text records are all response.
    """
    if record.get("kind") == "text":
        return "", record.get("text") or ""
    instruction = record.get("instruction") or ""
    extra = record.get("input") or ""
    output = record.get("output") or ""
    if template == "alpaca":
        if extra:
            return ALPACA_WITH_INPUT.format(instruction=instruction, input=extra), output
        return ALPACA_NO_INPUT.format(instruction=instruction), output
    messages = record.get("messages") or []
    if len(messages) >= 2 and messages[-1]["role"] == "assistant":
        turns = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        output = messages[-1]["content"]
    else:
        turns = [{"role": "user", "content": f"{instruction}\n\n{extra}" if extra else instruction}]
    prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return prompt, output


def encode(prompt: str, response: str, tokenizer: Any, max_len: int) -> Example:
    """Token ids of prompt + response + EOS, cut to ``max_len`` keeping at least half for the response."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        r = [*r, tokenizer.eos_token_id]
    room_for_prompt = max_len - min(len(r), max_len // 2)
    if len(p) > room_for_prompt:
        p = p[len(p) - room_for_prompt :]
    ids = (p + r)[:max_len]
    return Example(ids=ids, prompt_len=len(p))


def labels_for(example: Example) -> list[int]:
    """Response tokens keep their ids; prompt tokens are ``-100`` (no loss)."""
    return [IGNORE] * example.prompt_len + example.ids[example.prompt_len :]


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest in the batch; padding is masked out and labelled ``-100``."""
    import torch

    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = example.length
        ids[row, :n] = torch.tensor(example.ids)
        labels[row, :n] = torch.tensor(labels_for(example))
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def loss_positions(batch: dict[str, Any]) -> dict[str, Any]:
    """Add ``predict`` (flat indices of the hidden states that predict a response token) and ``targets``.

    Built on the host, before the batch moves, so the step never asks the device which tokens count.
    """
    labels = batch["labels"]
    width = labels.shape[1]
    keep = (labels[:, 1:] != IGNORE).nonzero()
    predict = keep[:, 0] * width + keep[:, 1]
    return {**batch, "predict": predict, "targets": labels[:, 1:][labels[:, 1:] != IGNORE]}


def token_budget(lengths: list[int], config: TrainConfig) -> int | None:
    """Tokens per micro-batch: ``tokens_per_batch``, else (packing) ``batch_size`` x mean length; None: rows."""
    if config.tokens_per_batch is not None:
        return config.tokens_per_batch
    if config.packing and lengths:
        return max(8, round(config.batch_size * sum(lengths) / len(lengths)))
    return None


def batch_plan(lengths: list[int], config: TrainConfig, epoch: int) -> list[list[int]]:
    """Micro-batches of example positions for one epoch: a pure function of (seed, epoch).

    Packing: the shuffled examples are packed whole, in order, up to the token budget. Padded:
    with ``group_by_length`` the shuffled examples are sorted by length within mega-batches of
    ``mega_batches`` micro-batches, so each micro-batch holds similar lengths, cut by row count
    (or so that rows x longest stays within the budget), and the micro-batches are shuffled again
    so lengths do not trend through the epoch.
    """
    from curate.training.packing import pack_order

    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(lengths))
    budget = token_budget(lengths, config)
    if config.packing:
        return pack_order(order.tolist(), lengths, budget)
    size = config.batch_size
    if config.group_by_length:
        mega = size * config.mega_batches
        chunks = [order[i : i + mega] for i in range(0, len(order), mega)]
        order = np.concatenate([sorted(c.tolist(), key=lambda i: (-lengths[i], i)) for c in chunks])
    if budget is None:
        batches = [order[i : i + size].tolist() for i in range(0, len(order), size)]
    else:
        batches, current, longest = [], [], 0
        for i in order.tolist():
            if current and (len(current) + 1) * max(longest, lengths[i]) > budget:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, lengths[i])
        batches += [current] if current else []
    if config.group_by_length:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def steps_per_epoch(n_examples: int, config: TrainConfig, lengths: list[int] | None = None) -> int:
    """Optimizer steps in one epoch (the first epoch's plan when the micro-batches depend on lengths)."""
    if lengths is not None and token_budget(lengths, config) is not None:
        return max(1, math.ceil(len(batch_plan(lengths, config, 0)) / config.grad_accum))
    return max(1, math.ceil(math.ceil(n_examples / config.batch_size) / config.grad_accum))


def total_steps(n_examples: int, config: TrainConfig, lengths: list[int] | None = None) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.epochs * steps_per_epoch(n_examples, config, lengths)))


def step_batches(lengths: list[int], config: TrainConfig, start: int = 0) -> Iterator[tuple[int, list[list[int]]]]:
    """(step, micro-batches) from ``start`` on, cycling through epochs."""
    step = 0
    epoch = 0
    while True:
        plan = batch_plan(lengths, config, epoch)
        for i in range(max(1, math.ceil(len(plan) / config.grad_accum))):
            if step >= start:
                yield step, plan[i * config.grad_accum : (i + 1) * config.grad_accum]
            step += 1
        epoch += 1


def training_records(run: str | Path, config: TrainConfig) -> tuple[Any, int]:
    """The first ``limit`` records of a run directory minus those whose instruction is an eval prompt; how many went."""
    from curate.run.directory import RunDir

    if not RunDir.is_run(run):
        raise CurateError(f"{run} is not a run directory (no manifest.json); ingest the data first")
    records = RunDir(run).records()
    if config.limit is not None:
        records = records.head(config.limit)
    held_out = set(_normalized(eval_records()["instruction"]).to_list())
    contaminated = _normalized(records["instruction"]).is_in(list(held_out)) & (records["kind"] != "text")
    return records.filter(~contaminated.fill_null(False)), int(contaminated.sum())


def load_examples(run: str | Path, config: TrainConfig, tokenizer: Any) -> tuple[list[Example], dict[str, Any]]:
    """The training examples of a run directory, minus any whose instruction is an eval prompt."""
    records, dropped = training_records(run, config)
    examples = []
    for record in records.iter_rows(named=True):
        prompt, response = prompt_and_response(record, config.template, tokenizer)
        examples.append(encode(prompt, response, tokenizer, config.max_len))
    info = {"run": str(run), "records": records.height + dropped, "decontaminated": dropped}
    info["examples"] = len(examples)
    info["tokens"] = sum(e.length for e in examples)
    info["response_tokens"] = sum(e.length - e.prompt_len for e in examples)
    return examples, info


def _normalized(column: Any) -> Any:
    return column.fill_null("").str.strip_chars().str.to_lowercase()


def eval_records():
    """The AlpacaEval prompts with their reference outputs (805), in file order."""
    import polars as pl

    from curate.io.ingest import Ingest

    return pl.concat([batch for batch, _ in Ingest([EVAL_DATASET]).batches()])


def eval_examples(config: TrainConfig, tokenizer: Any) -> list[Example]:
    """A fixed subset (the same for every arm and seed) of the AlpacaEval prompts, encoded."""
    from curate.selection.strategies import seeded_order

    records = eval_records()
    if config.eval_n is not None and config.eval_n < records.height:
        records = records[seeded_order(records["id"], 0)[: config.eval_n].tolist()]
    examples = []
    for record in records.iter_rows(named=True):
        prompt, response = prompt_and_response(record, config.template, tokenizer)
        examples.append(encode(prompt, response, tokenizer, config.max_len))
    return examples


def _fingerprint(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_fingerprint(run: str | Path) -> str:
    from curate.run.directory import RunDir

    manifest = RunDir(run).manifest()
    return _fingerprint([f["sha256"] for f in manifest["outputs"]["data"]])


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(batch: dict[str, Any], device: str) -> dict[str, Any]:
    """Tensors to the device (non-blocking from pinned memory on CUDA); host values stay as they are."""
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


def response_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """Summed next-token cross-entropy over response tokens, and how many there were.

    Only the positions that predict a response token go through the output head, which saves
    the vocabulary projection for prompt and padding positions. ``batch`` is padded (``collate``)
    or packed (``curate.training.packing.collate_packed``: positions restart per example and
    attention stays inside each example).
    """
    import torch
    import torch.nn.functional as F

    from curate.training.packing import PACKED_ATTENTION, register_packed_attention

    if "predict" not in batch:
        batch = loss_positions(batch)
    count = int(batch["targets"].shape[0])
    if count == 0:
        return torch.zeros((), device=batch["input_ids"].device, requires_grad=True), 0
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    head = base.get_output_embeddings()
    if "cu_seq_lens" in batch:
        register_packed_attention()
        inputs = {
            "input_ids": batch["input_ids"],
            "position_ids": batch["position_ids"],
            "cu_seq_lens": batch["cu_seq_lens"],
            "seq_lengths": batch["seq_lengths"],
        }
        previous = base.config._attn_implementation
        base.config._attn_implementation = PACKED_ATTENTION
    else:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        previous = None
    try:
        if decoder is not None and head is not None:
            hidden = decoder(**inputs).last_hidden_state
            logits = head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch["predict"]))
        else:
            logits = model(**inputs).logits
            logits = logits.reshape(-1, logits.shape[-1]).index_select(0, batch["predict"])
    finally:
        if previous is not None:
            base.config._attn_implementation = previous
    return F.cross_entropy(logits.float(), batch["targets"], reduction="sum"), count


def micro_batch(examples: list[Example], pad_id: int, packed: bool, pin: bool = False) -> dict[str, Any]:
    """One micro-batch on the host, with its loss positions (packed or padded)."""
    from curate.training.packing import collate_packed

    if packed:
        batch = collate_packed(examples)
    else:
        batch = loss_positions(collate(examples, pad_id))
        batch["tokens"] = sum(e.length for e in examples)
    if pin:
        batch = {k: v.pin_memory() if hasattr(v, "pin_memory") else v for k, v in batch.items()}
    return batch


def evaluate(
    model: Any,
    examples: list[Example],
    pad_id: int,
    device: str,
    batch_size: int = 8,
    tokens_per_batch: int | None = None,
) -> dict[str, Any]:
    """Held-out response loss (mean over response tokens) and perplexity; packed when given a token budget."""
    import torch

    from curate.training.packing import pack_order

    model.eval()
    order = sorted(range(len(examples)), key=lambda i: (-examples[i].length, i))
    if tokens_per_batch is None:
        groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        groups = pack_order(order, [e.length for e in examples], tokens_per_batch)
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    with torch.no_grad(), _autocast(device):
        for group in groups:
            batch = micro_batch([examples[j] for j in group], pad_id, tokens_per_batch is not None)
            loss, n = response_loss_sum(model, to_device(batch, device))
            total += loss.to(torch.float64)
            count += n
    model.train()
    loss = float(total) / max(count, 1)
    return {
        "prompts": len(examples),
        "response_tokens": count,
        "loss": round(loss, 6),
        "perplexity": round(math.exp(loss), 4),
    }


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_model(config: TrainConfig, device: str | None = None):
    """The base model with fresh LoRA adapters (seeded), and its tokenizer."""
    from peft import LoraConfig, get_peft_model

    from curate.llm.lm import load_lm

    lm = load_lm(config.model, device=device)
    seed_everything(config.seed)
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(lm.model, lora)
    model.train()
    return model, lm


def train(
    run: str | Path,
    out: str | Path,
    config: TrainConfig,
    device: str | None = None,
    save_every: int = 50,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train LoRA adapters on ``run``'s records into ``out``; resume from a checkpoint there.

    ``stop_after`` ends the process's work after that many steps (checkpointed), as a kill would.
    """
    import torch
    from peft import set_peft_model_state_dict
    from transformers import get_cosine_schedule_with_warmup

    out = claim_folder(out, "training run", signs=(METRICS, CHECKPOINT))
    clean_partial(out)
    fingerprint = _fingerprint({"config": config.as_dict(), "data": _data_fingerprint(run)})
    metrics_path = out / METRICS
    if metrics_path.exists():
        done = json.loads(metrics_path.read_text())
        if done.get("fingerprint") == fingerprint and (out / ADAPTER).is_dir():
            return TrainResult(out, done, up_to_date=True, losses=done["losses"])
    started = time.monotonic()
    model, lm = build_model(config, device)
    device = lm.device
    tokenizer = lm.tokenizer
    data_start = time.monotonic()
    examples, data = load_examples(run, config, tokenizer)
    if not examples:
        raise CurateError(f"{run} has no training examples (after removing evaluation prompts)")
    lengths = [e.length for e in examples]
    budget = token_budget(lengths, config)
    steps = total_steps(len(examples), config, lengths)
    prepare_seconds = time.monotonic() - data_start
    cuda = device.startswith("cuda")
    if config.compile:
        model.get_base_model().get_decoder().compile(dynamic=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=True if cuda else None, foreach=not cuda or None
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, math.ceil(config.warmup_ratio * steps), steps)
    losses: list[float] = []
    tokens_seen = 0
    start = 0
    checkpoint = out / CHECKPOINT
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["fingerprint"] != fingerprint:
            raise CurateError(
                f"{checkpoint} belongs to a different run or configuration; use another --out or delete it"
            )
        set_peft_model_state_dict(model, state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        losses, tokens_seen, start = state["losses"], state["tokens"], state["step"]
    pad_id = tokenizer.pad_token_id
    bar = Progress(f"train {Path(run).name} seed {config.seed}", "steps", total=steps, enabled=progress)
    bar.advance(start)
    compute_start = time.monotonic()
    tokens_this_process = 0
    # Step losses stay on the device (float64, so the sums equal Python's) and are read in bulk:
    # reading each one would make the CPU wait for the GPU at every micro-batch.
    pending: list[Any] = []

    def settle() -> None:
        if pending:
            losses.extend(round(v, 6) for v in torch.stack(pending).tolist())
            pending.clear()

    end = steps if stop_after is None else min(steps, start + stop_after)

    def host_batches(micro: list[list[int]]) -> list[dict[str, Any]]:
        return [micro_batch([examples[i] for i in ids], pad_id, config.packing, pin=cuda) for ids in micro]

    # The next step's micro-batches are built on a host thread while this step runs.
    with ThreadPoolExecutor(max_workers=1) as prefetch:
        plan = step_batches(lengths, config, start)
        upcoming = prefetch.submit(host_batches, next(plan)[1]) if start < end else None
        for step in range(start, end):
            batches = upcoming.result()
            upcoming = prefetch.submit(host_batches, next(plan)[1]) if step + 1 < end else None
            n_response = sum(int(b["targets"].shape[0]) for b in batches)
            step_loss = torch.zeros((), dtype=torch.float64, device=device)
            for batch in batches:
                tokens_this_process += batch["tokens"]
                with _autocast(device):
                    loss_sum, _ = response_loss_sum(model, to_device(batch, device))
                (loss_sum / max(n_response, 1)).backward()
                step_loss += loss_sum.detach().to(torch.float64)
            _optimizer_step(params, optimizer, scheduler, step_loss, n_response, pending)
            bar.advance(1)
            if (step + 1) % save_every == 0 and step + 1 < steps:
                settle()
                _save_checkpoint(
                    checkpoint,
                    model,
                    optimizer,
                    scheduler,
                    fingerprint,
                    losses,
                    tokens_seen + tokens_this_process,
                    step + 1,
                )
    settle()
    bar.close()
    compute_seconds = time.monotonic() - compute_start
    tokens_seen += tokens_this_process
    if len(losses) < steps:
        _save_checkpoint(checkpoint, model, optimizer, scheduler, fingerprint, losses, tokens_seen, len(losses))
        return TrainResult(out, {"steps": len(losses), "of": steps}, resumed_from=start, losses=losses)
    evaluation = evaluate(
        model, eval_examples(config, tokenizer), pad_id, device, config.batch_size, budget if config.packing else None
    )
    _save_adapter(model, out / ADAPTER)
    metrics = {
        "fingerprint": fingerprint,
        "model": lm.name,
        "model_path": lm.path,
        "device": device,
        "dtype": "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32",
        "config": config.as_dict(),
        "data": data,
        "steps": steps,
        "epochs": round(examples_in_steps(lengths, config, steps) / len(examples), 4),
        "losses": losses,
        "final_train_loss": round(float(np.mean(losses[-max(1, len(losses) // 10) :])), 6),
        "eval": {"dataset": EVAL_DATASET, **evaluation},
        "trainable_parameters": sum(p.numel() for p in params),
        "tokens_seen": tokens_seen,
        "tokens_per_s": round(tokens_this_process / max(compute_seconds, 1e-9), 2),
        "packing": config.packing,
        "attention": _attention_name(config.packing, device),
        "tokens_per_batch": budget,
        "effective_batch_tokens": budget * config.grad_accum if budget is not None else None,
        "mean_tokens_per_step": round(steps_tokens(lengths, config, steps) / steps, 1),
        "prepare_seconds": round(prepare_seconds, 2),
        "train_seconds": round(compute_seconds, 2),
        "peak_memory_mb": _peak_memory_mb(device),
        "seconds": round(time.monotonic() - started, 2),
        "resumed_from_step": start,
    }
    from dataset_cards.figures import loss_curves

    loss_curves({f"seed {config.seed}": losses}, out / LOSS_CURVE, f"Training loss: {Path(run).name}")
    write_json(metrics_path, metrics)
    checkpoint.unlink(missing_ok=True)
    return TrainResult(out, metrics, resumed_from=start, losses=losses)


def _optimizer_step(params, optimizer, scheduler, step_loss, n_response: int, pending: list[Any]) -> None:
    import torch

    torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    pending.append(step_loss / max(n_response, 1))


def _steps(lengths: list[int], config: TrainConfig, steps: int) -> Iterator[list[list[int]]]:
    for step, micro in step_batches(lengths, config):
        if step >= steps:
            return
        yield micro


def examples_in_steps(lengths: list[int], config: TrainConfig, steps: int) -> int:
    """How many examples the first ``steps`` steps train on (the plan is a pure function of seed and epoch)."""
    return sum(len(ids) for micro in _steps(lengths, config, steps) for ids in micro)


def steps_tokens(lengths: list[int], config: TrainConfig, steps: int) -> int:
    """Real (non-padding) tokens of the first ``steps`` steps."""
    return sum(lengths[i] for micro in _steps(lengths, config, steps) for ids in micro for i in ids)


def _attention_name(packing: bool, device: str) -> str:
    from curate.training.packing import varlen_in_use

    if not packing:
        return "sdpa (padded rows)"
    if device.startswith("cuda") and varlen_in_use() == "on":
        return "flash varlen (packed)"
    return "sdpa per example (packed)"


def _peak_memory_mb(device: str) -> float:
    import resource

    import torch

    if device.startswith("cuda"):
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _save_checkpoint(path: Path, model, optimizer, scheduler, fingerprint, losses, tokens, step) -> None:
    import torch
    from peft import get_peft_model_state_dict

    state = {
        "fingerprint": fingerprint,
        "step": step,
        "adapter": get_peft_model_state_dict(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(),
        "losses": list(losses),
        "tokens": tokens,
    }
    with atomic_path(path, durable=True) as tmp:
        torch.save(state, tmp)


def _save_adapter(model: Any, target: Path) -> None:
    """peft's adapter folder, written beside the target and swapped in whole."""
    staging = target.with_name(f"{TMP_MARK}{os.getpid()}-{target.name}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
