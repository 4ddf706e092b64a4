"""IFD, instruction-following difficulty (Li et al., "From Quantity to Quality", the Cherry LLM paper).

``ifd = loss(response | prompt) / loss(response)``: the mean cross-entropy of the response tokens
with the instruction (and input) before them, over the same without it. Near or above 1, the
instruction barely helps the model predict the answer (the pair is hard, or the answer does not
follow the instruction); well below 1, the answer follows from the instruction. The default model
is the local SmolLM2-135M-Instruct; any Hugging Face causal LM name or path works (GPU when present).

The conditioned text uses the model's chat template (user turn = instruction and input, assistant
turn = response) when it has one, else the Alpaca prompt; the unconditioned text is the response
alone after the model's BOS token. Responses longer than ``max_response_tokens`` are cut, and the
prompt keeps its last ``max_tokens - response`` tokens, so every record costs a bounded amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.records.schema import ID, INPUT, INSTRUCTION, OUTPUT
from curate.run.progress import Progress
from curate.stages.result import StageResult

STAGE = "ifd"
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class IfdParams:
    """Attributes:
    model: causal LM name or path (None: the bundled SmolLM2-135M-Instruct).
    batch_size: sequences per forward pass (sorted by length, so padding stays small).
    max_tokens: tokens per conditioned sequence at most.
    max_response_tokens: response tokens scored at most.
    """

    model: str | None = None
    batch_size: int = 8
    max_tokens: int = 512
    max_response_tokens: int = 256


def _prompt_ids(tokenizer: Any, instruction: str, input_text: str) -> list[int]:
    user = instruction if not input_text else f"{instruction}\n\n{input_text}"
    if tokenizer.chat_template:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True)
        return list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    template = ALPACA_PROMPT_INPUT if input_text else ALPACA_PROMPT
    return tokenizer(template.format(instruction=instruction, input=input_text), add_special_tokens=True)["input_ids"]


def _mean_losses(lm: Any, sequences: list[tuple[list[int], int]], batch_size: int, meter: Progress) -> np.ndarray:
    """Mean cross-entropy over the last ``n`` tokens of each sequence ``(ids, n)``."""
    import torch

    losses = np.zeros(len(sequences), dtype=np.float64)
    order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i][0]), i))
    pad = lm.tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(sequences[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for row, i in enumerate(batch):
            seq, scored = sequences[i]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
            labels[row, len(seq) - scored : len(seq)] = torch.tensor(seq[len(seq) - scored :])
        with torch.inference_mode():
            logits = lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device)).logits.float()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:].to(lm.device)
        token_loss = torch.nn.functional.cross_entropy(
            shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), reduction="none"
        ).view(shift_labels.shape)
        valid = (shift_labels != -100).float()
        mean = (token_loss * valid).sum(1) / valid.sum(1).clamp(min=1)
        losses[batch] = mean.cpu().numpy()
        meter.advance(len(batch))
    return losses


def ifd_scores(records: pl.DataFrame, lm: Any, params: IfdParams, progress: bool = False) -> pl.DataFrame:
    """``id``, ``ifd``, ``loss_conditioned``, ``loss_response`` (null where the response is empty)."""
    tokenizer = lm.tokenizer
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    conditioned: list[tuple[list[int], int]] = []
    alone: list[tuple[list[int], int]] = []
    scored: list[int] = []
    columns = [records[c].fill_null("").to_list() for c in (INSTRUCTION, INPUT, OUTPUT)]
    for i, (instruction, input_text, output) in enumerate(zip(*columns, strict=True)):
        response = tokenizer(output, add_special_tokens=False)["input_ids"][: params.max_response_tokens]
        if not response:
            continue
        prompt = _prompt_ids(tokenizer, instruction, input_text)
        room = max(1, params.max_tokens - len(response))
        conditioned.append((prompt[-room:] + response, len(response)))
        alone.append((bos + response, len(response) - (0 if bos else 1)))
        scored.append(i)
    meter = Progress("ifd", unit="sequences", total=2 * len(scored), enabled=progress)
    with_prompt = _mean_losses(lm, conditioned, params.batch_size, meter)
    without = _mean_losses(lm, alone, params.batch_size, meter)
    meter.close()
    n = records.height
    cond, resp = np.full(n, np.nan), np.full(n, np.nan)
    cond[scored], resp[scored] = with_prompt, without
    ifd = np.divide(cond, resp, out=np.full(n, np.nan), where=resp > 0)
    frame = pl.DataFrame({ID: records[ID], "ifd": ifd, "loss_conditioned": cond, "loss_response": resp})
    return frame.with_columns(pl.col(c).fill_nan(None) for c in ("ifd", "loss_conditioned", "loss_response"))


def ifd_stage(records: pl.DataFrame, params: IfdParams, progress: bool = False) -> StageResult:
    """The ``ifd`` stage: keeps every record and annotates ``ifd`` (a signal for selection, not a filter)."""
    from curate.llm.lm import load_lm
    from curate.records.schema import empty_rejects

    if INSTRUCTION not in records.columns:
        raise CurateError("IFD needs instruction records (instruction, input, output)")
    lm = load_lm(params.model)
    annotations = ifd_scores(records, lm, params, progress)
    result = StageResult(
        STAGE, {**params.__dict__, "model": lm.name}, records.height, records, empty_rejects(), annotations
    )
    scored = annotations["ifd"].drop_nulls()
    result.stats = {
        "scored": scored.len(),
        "unscored_empty_response": records.height - scored.len(),
        "median_ifd": round(float(scored.median()), 4) if scored.len() else None,
        "device": lm.device,
    }
    return result
