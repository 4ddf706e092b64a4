"""Pairwise judging of two trained arms on the evaluation prompts, with position swap.

Each prompt is judged twice, once with arm A's answer first and once with it second, because
LLM judges favour a position. The two verdicts combine into one outcome per prompt: a win
when A wins both orders or wins one and ties the other, a loss likewise, a tie otherwise
(including one win each way, the judge contradicting itself).

The judge is any callable from a list of chat requests (lists of messages) to reply texts, so
any OpenAI-compatible endpoint fits; :func:`endpoint_judge` builds one on ``curate.llm.chat``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from curate.errors import CurateError

Judge = Callable[[list[list[dict[str, str]]]], list[str]]

JUDGE_SYSTEM = (
    "You compare two answers to the same instruction. Judge helpfulness, correctness and relevance, not length "
    "or position. Reply with exactly one of: 'Answer 1', 'Answer 2' or 'Tie'."
)


def judge_messages(instruction: str, first: str, second: str) -> list[dict[str, str]]:
    user = f"Instruction:\n{instruction}\n\nAnswer 1:\n{first}\n\nAnswer 2:\n{second}\n\nWhich answer is better?"
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(reply: str | None) -> int | None:
    """1 or 2 for the better answer, 0 for a tie, None when the reply names neither."""
    text = (reply or "").strip().lower()
    found = re.findall(r"answer\s*([12])|\b(tie)\b", text)
    if not found:
        return None
    number, tie = found[0]
    return 0 if tie else int(number)


def combine(a_first: int | None, a_second: int | None) -> str:
    """One outcome for A from the verdict with A first and the verdict with A second."""
    score = {1: 1, 2: -1, 0: 0, None: 0}[a_first] + {2: 1, 1: -1, 0: 0, None: 0}[a_second]
    return "win" if score > 0 else "loss" if score < 0 else "tie"


def pairwise(
    instructions: Sequence[str], answers_a: Sequence[str], answers_b: Sequence[str], judge: Judge
) -> dict[str, Any]:
    """Win / tie / loss rates of A against B over the prompts, both orders judged."""
    if not (len(instructions) == len(answers_a) == len(answers_b)):
        raise CurateError("pairwise judging needs one answer from each arm per prompt")
    requests = [judge_messages(i, a, b) for i, a, b in zip(instructions, answers_a, answers_b, strict=True)]
    requests += [judge_messages(i, b, a) for i, a, b in zip(instructions, answers_a, answers_b, strict=True)]
    replies = judge(requests)
    n = len(instructions)
    verdicts = [parse_verdict(r) for r in replies]
    outcomes = [combine(verdicts[k], verdicts[n + k]) for k in range(n)]
    counts = {o: outcomes.count(o) for o in ("win", "tie", "loss")}
    return {
        "prompts": n,
        **{f"{o}_rate": round(c / max(n, 1), 4) for o, c in counts.items()},
        **counts,
        "unparsed_verdicts": verdicts.count(None),
        "position_consistent": sum(
            1 for k in range(n) if verdicts[k] is not None and combine(verdicts[k], verdicts[n + k]) != "tie"
        ),
        "outcomes": outcomes,
    }


def endpoint_judge(base_url: str, model: str, api_key_env: str | None = None) -> Judge:
    """A judge on any OpenAI-compatible endpoint, through the shared client ``curate.llm.chat``
    (cached, retried); temperature 0."""
    from curate.llm.chat import ChatClient, ChatRequest, ChatSettings

    def judge(requests: list[list[dict[str, str]]]) -> list[str]:
        with ChatClient(ChatSettings(base_url=base_url, model=model, api_key_env=api_key_env)) as client:
            replies = client.complete_many([ChatRequest.chat(m, temperature=0.0, max_tokens=8) for m in requests])
        return [r.text or "" for r in replies]

    return judge


def judge_arms(train_a: str, train_b: str, judge: Judge, n: int = 50, max_new_tokens: int = 256) -> dict[str, Any]:
    """Answers from two trainer outputs (same base model and template) on ``n`` AlpacaEval prompts, judged."""
    import json
    from pathlib import Path

    from curate.selection.strategies import seeded_order
    from curate.training.evaluate import GenerationSettings, adapter_generations
    from curate.training.trainer import eval_records

    configs = [json.loads((Path(t) / "metrics.json").read_text())["config"] for t in (train_a, train_b)]
    if configs[0]["model"] != configs[1]["model"] or configs[0]["template"] != configs[1]["template"]:
        raise CurateError("pairwise judging compares adapters of the same base model and prompt template")
    records = eval_records()
    records = records[seeded_order(records["id"], 0)[:n].tolist()]
    instructions = list(records["instruction"])
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    answers = [adapter_generations(t, instructions, settings, progress=False) for t in (train_a, train_b)]
    result = pairwise(instructions, answers[0], answers[1], judge)
    return {"a": str(train_a), "b": str(train_b), **result}
