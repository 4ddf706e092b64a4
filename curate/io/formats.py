"""Field mappings from the shapes instruction and text corpora come in to the record model.

A mapper takes one parsed row (a dict) and returns the record's fields, or raises
:class:`BadRecord` with a reason code. Unknown keys of a row go to ``meta`` so nothing a
source carries is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from curate.records.schema import KIND_INSTRUCTION, KIND_TEXT

Row = dict[str, Any]


class BadRecord(Exception):
    """A row that cannot become a record: ``reason`` is a stable snake_case code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _field(row: Row, name: str, *, required: bool, default: str | None = None) -> str | None:
    if name not in row or row[name] is None:
        if required:
            raise BadRecord("missing_field", f"field {name!r} is missing")
        return default
    value = row[name]
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f"field {name!r} is {type(value).__name__}, expected string")
    return value


def _meta(row: Row, used: tuple[str, ...]) -> str | None:
    extra = {k: v for k, v in row.items() if k not in used}
    return orjson.dumps(extra, option=orjson.OPT_SORT_KEYS).decode() if extra else None


def alpaca(row: Row, id_field: str | None = None) -> dict[str, Any]:
    """``{instruction, input, output}``; ``input`` may be absent (AlpacaEval)."""
    return {
        "kind": KIND_INSTRUCTION,
        "instruction": _field(row, "instruction", required=True),
        "input": _field(row, "input", required=False, default=""),
        "output": _field(row, "output", required=True),
        "meta": _meta(row, ("instruction", "input", "output", id_field or "")),
    }


def dolly(row: Row, id_field: str | None = None) -> dict[str, Any]:
    """Dolly 15k: ``{instruction, context, response, category}``."""
    return {
        "kind": KIND_INSTRUCTION,
        "instruction": _field(row, "instruction", required=True),
        "input": _field(row, "context", required=False, default=""),
        "output": _field(row, "response", required=True),
        "meta": _meta(row, ("instruction", "context", "response", id_field or "")),
    }


def seed_tasks(row: Row, id_field: str | None = None) -> dict[str, Any]:
    """Self-instruct seed tasks: ``{id, name, instruction, instances: [{input, output}]}``."""
    instances = row.get("instances")
    if not isinstance(instances, list) or not instances or not isinstance(instances[0], dict):
        raise BadRecord("wrong_type", "field 'instances' must be a non-empty list of {input, output}")
    first = instances[0]
    return {
        "kind": KIND_INSTRUCTION,
        "instruction": _field(row, "instruction", required=True),
        "input": _field(first, "input", required=False, default=""),
        "output": _field(first, "output", required=True),
        "meta": _meta(row, ("instruction", id_field or "id")),
    }


_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _chat(messages: list[dict[str, str]], row: Row, used: tuple[str, ...]) -> dict[str, Any]:
    if not any(m["role"] == "user" for m in messages):
        raise BadRecord("empty", "conversation has no user turn")
    first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    reply = next((m["content"] for m in messages[first_user + 1 :] if m["role"] == "assistant"), None)
    if reply is None:
        raise BadRecord("missing_field", "conversation has no assistant reply")
    return {
        "kind": KIND_INSTRUCTION,
        "instruction": messages[first_user]["content"],
        "input": "",
        "output": reply,
        "messages": messages,
        "meta": _meta(row, used),
    }


def lima(row: Row, id_field: str | None = None) -> dict[str, Any]:
    """LIMA: ``{conversations: [user, assistant, user, ...], source}``."""
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise BadRecord("wrong_type", "field 'conversations' must be a non-empty list of strings")
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
    return _chat(messages, row, ("conversations", id_field or ""))


def sharegpt(row: Row, id_field: str | None = None) -> dict[str, Any]:
    """ShareGPT ``{conversations: [{from, value}]}`` or OpenAI-style ``{messages: [{role, content}]}``."""
    key, role_key, text_key = (
        ("conversations", "from", "value") if "conversations" in row else ("messages", "role", "content")
    )
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise BadRecord("wrong_type", f"field {key!r} must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get(text_key), str):
            raise BadRecord("wrong_type", f"turn {i} must be an object with a string {text_key!r}")
        role = _ROLES.get(str(turn.get(role_key, "")).lower())
        if role is None:
            raise BadRecord("wrong_type", f"turn {i} has unknown role {turn.get(role_key)!r}")
        messages.append({"role": role, "content": turn[text_key]})
    return _chat(messages, row, (key, id_field or "id"))


def text_mapper(field: str) -> Callable[..., dict[str, Any]]:
    def text(row: Row, id_field: str | None = None) -> dict[str, Any]:
        return {
            "kind": KIND_TEXT,
            "text": _field(row, field, required=True),
            "meta": _meta(row, (field, id_field or "")),
        }

    return text


MAPPERS: dict[str, Callable[..., dict[str, Any]]] = {
    "alpaca": alpaca,
    "dolly": dolly,
    "seed-tasks": seed_tasks,
    "lima": lima,
    "sharegpt": sharegpt,
    "text": text_mapper("text"),
}
FORMATS = tuple(MAPPERS)


def detect_format(row: Row) -> str:
    """Guess the mapping from one row's keys."""
    keys = set(row)
    if "instances" in keys and "instruction" in keys:
        return "seed-tasks"
    if {"instruction", "context", "response"} <= keys:
        return "dolly"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "conversations" in keys:
        turns = row["conversations"]
        if isinstance(turns, list) and turns and isinstance(turns[0], str):
            return "lima"
        return "sharegpt"
    if "messages" in keys:
        return "sharegpt"
    if "text" in keys:
        return "text"
    raise BadRecord(
        "unknown_format",
        f"cannot tell the format from keys {sorted(keys)}; pass --format or --text-field",
    )
