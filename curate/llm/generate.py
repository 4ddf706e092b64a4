"""Batched text generation with a local causal LM (:func:`curate.llm.lm.load_lm`).

Used by the OpenAI-compatible server (:mod:`curate.llm.server`) and by self-instruct's in-process
backend. Prompts are left-padded into one batch; ``temperature == 0`` is greedy, otherwise
sampling with ``top_p`` under ``torch.manual_seed(seed)``, so a seeded call is reproducible on
the same machine and batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Generated:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


def chat_prompt(lm: Any, messages: list[dict[str, str]]) -> str:
    """The model's chat template applied to ``messages``, ready for the assistant's turn."""
    tokenizer = lm.tokenizer
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"


def generate_batch(
    lm: Any,
    prompts: list[str],
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    n: int = 1,
    stop: list[str] | None = None,
    batch_size: int = 8,
) -> list[list[Generated]]:
    """``n`` continuations of every prompt, in order, ``batch_size`` prompts per forward batch."""
    out: list[list[Generated]] = []
    for start in range(0, len(prompts), batch_size):
        out.extend(_generate(lm, prompts[start : start + batch_size], max_tokens, temperature, top_p, seed, n, stop))
    return out


def _generate(
    lm: Any,
    prompts: list[str],
    max_tokens: int,
    temperature: float,
    top_p: float,
    seed: int | None,
    n: int,
    stop: list[str] | None,
) -> list[list[Generated]]:
    import torch

    tokenizer = lm.tokenizer
    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    encoded = {k: v.to(lm.device) for k, v in encoded.items()}
    prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
    sampling = temperature > 0
    options: dict[str, Any] = {
        "max_new_tokens": max(1, int(max_tokens)),
        "do_sample": sampling,
        "num_return_sequences": n,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if sampling:
        options.update(temperature=float(temperature), top_p=float(top_p), top_k=0)
    else:
        options.update(temperature=None, top_p=None, top_k=None)
    if seed is not None:
        torch.manual_seed(int(seed))
    with torch.inference_mode():
        sequences = lm.model.generate(**encoded, **options)
    new = sequences[:, encoded["input_ids"].shape[1] :]
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    eos = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])} - {None}
    results: list[list[Generated]] = []
    for i, prompt_length in enumerate(prompt_lengths):
        group = []
        for j in range(n):
            ids = new[i * n + j].tolist()
            finish = "length"
            for k, token in enumerate(ids):
                if token in eos:
                    ids, finish = ids[:k], "stop"
                    break
            text = tokenizer.decode(ids, skip_special_tokens=True)
            if stop:
                cut = min((text.find(s) for s in stop if s and s in text), default=-1)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            group.append(Generated(text, finish, int(prompt_length), len(ids)))
        results.append(group)
    return results
