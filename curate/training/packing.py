"""Packed, padding-free micro-batches: several examples in one flat row, each attending only to itself.

Why: padding costs compute on every layer, and batches by row count make arms of different
lengths take different amounts of compute per step. A packed micro-batch is the concatenation of
whole examples up to a token budget, with positions restarting at 0 for every example and
attention confined to each example, so the loss and gradients equal those of the same examples
padded one per row (``tests/test_train.py`` proves it).

Attention goes through a function registered with transformers' attention interface
(``curate_packed``): flash varlen attention on CUDA (``torch.nn.attention.varlen``), checked once
against the per-example reference and dropped if it disagrees; on CPU one causal SDPA call per
example (no mask is ever built, so the cost is that of the examples, not of the packed row).
Example boundaries are known on the host when the batch is built, so nothing in the step waits
for the device.
"""

from __future__ import annotations

from typing import Any

PACKED_ATTENTION = "curate_packed"
# "untested" until the first CUDA call compares varlen attention with the per-example reference.
_varlen_state = {"cuda": "untested"}


def pack_order(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Micro-batches of whole examples, in ``order``, each at most ``budget`` tokens.

    An example is never split (its loss must stay the loss of the whole example); one longer than
    the budget gets a micro-batch of its own.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i in order:
        if current and used + lengths[i] > budget:
            batches.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        batches.append(current)
    return batches


def collate_packed(examples: list[Any]) -> dict[str, Any]:
    """One flat row: ids, per-example positions, boundaries, and the positions that carry loss.

    ``predict`` indexes the flattened hidden states that predict a response token and ``targets``
    holds those tokens, so the output head only sees them; a token never predicts across an
    example boundary.
    """
    import torch

    ids: list[int] = []
    positions: list[int] = []
    predict: list[int] = []
    targets: list[int] = []
    lengths = [e.length for e in examples]
    offset = 0
    for example in examples:
        n = example.length
        ids.extend(example.ids)
        positions.extend(range(n))
        first = max(example.prompt_len, 1)
        predict.extend(range(offset + first - 1, offset + n - 1))
        targets.extend(example.ids[first:])
        offset += n
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "cu_seq_lens": torch.tensor(cu, dtype=torch.int32),
        "predict": torch.tensor(predict, dtype=torch.long),
        "targets": torch.tensor(targets, dtype=torch.long),
        "seq_lengths": lengths,
        "tokens": offset,
    }


def _per_example_attention(query, key, value, lengths: list[int], scaling: float):
    """Causal SDPA example by example (query ``[1, H, T, D]``); output ``[1, T, H, D]``."""
    import torch
    import torch.nn.functional as F

    gqa = query.shape[1] != key.shape[1]
    parts = [
        F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling, enable_gqa=gqa)
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous()


def _varlen_attention(query, key, value, cu_seq_lens, max_len: int, scaling: float):
    from torch.nn.attention.varlen import varlen_attn

    groups = query.shape[1] // key.shape[1]
    q = query[0].transpose(0, 1).contiguous()
    k = key[0].repeat_interleave(groups, dim=0).transpose(0, 1).contiguous()
    v = value[0].repeat_interleave(groups, dim=0).transpose(0, 1).contiguous()
    out = varlen_attn(q, k, v, cu_seq_lens, cu_seq_lens, max_len, max_len, scale=scaling, window_size=(-1, 0))
    return out.unsqueeze(0)


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention-interface function for packed rows (``cu_seq_lens`` and ``seq_lengths`` in kwargs)."""
    lengths = kwargs["seq_lengths"]
    cu_seq_lens = kwargs["cu_seq_lens"]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if query.is_cuda and _varlen_state["cuda"] != "off":
        try:
            out = _varlen_attention(query, key, value, cu_seq_lens, max(lengths), scaling)
        except (RuntimeError, ImportError, NotImplementedError, TypeError, ValueError):
            _varlen_state["cuda"] = "off"
        else:
            if _varlen_state["cuda"] == "untested":
                reference = _per_example_attention(query, key, value, lengths, scaling)
                close = (out.float() - reference.float()).abs().max().item() < 2e-2
                _varlen_state["cuda"] = "on" if close else "off"
                if not close:
                    return reference, None
            return out, None
    return _per_example_attention(query, key, value, lengths, scaling), None


def varlen_in_use() -> str:
    """``on``, ``off`` or ``untested``: whether CUDA steps use flash varlen attention."""
    return _varlen_state["cuda"]


def register_packed_attention() -> None:
    """Make ``curate_packed`` an attention implementation (no mask function: none is ever built)."""
    from transformers import AttentionInterface

    AttentionInterface.register(PACKED_ATTENTION, packed_attention)
