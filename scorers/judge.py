"""An LLM judge, AlpaGasus style: ask a chat model to rate each record's accuracy on 0-5.

Two prompts: ``curate`` (the project's own: the score alone on the first line, then the reason)
and ``alpagasus`` (the exact published prompt, read from ``alpagasus/rating_prompt.json`` in the
data folder, to reproduce the paper); or a JSON file of the same shape. Every record gets a row
in the annotation: a reply that holds no score in range keeps its raw text, a null score and a
``judge_error`` reason. The judge annotates and never rejects; selection decides later.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import CurateError
from curate.llm.chat import ChatClient, ChatReply, ChatRequest
from curate.records.schema import INPUT, INSTRUCTION, OUTPUT, empty_rejects
from curate.run.progress import Progress
from curate.stages.result import StageResult

STAGE = "judge"
SCORE = "judge_score"
MAX_SCORE = 5.0
ALPAGASUS_PROMPT_FILE = Path("alpagasus") / "rating_prompt.json"

CURATE_SYSTEM = "You are a strict, fair grader of instruction-following data for training assistants."
CURATE_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
CURATE_QUESTION = (
    "Rate the accuracy of the response to the instruction and the input on a scale of 0 to 5: 5 means fully "
    "correct, complete and helpful; 0 means wrong, unrelated or harmful. Write the score alone on the first "
    "line (a number such as 4 or 4.5). On the next line give the reason in one or two sentences."
)


@dataclass(frozen=True)
class JudgePrompt:
    """A system prompt, a record template with ``{instruction}``, ``{input}``, ``{output}``, and the question."""

    name: str
    system: str
    template: str
    question: str

    def messages(self, instruction: str, input: str, output: str) -> list[dict[str, str]]:
        fields = {"instruction": instruction, "input": input, "output": output}
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.template.format_map(fields) + self.question},
        ]

    def sha256(self) -> str:
        blob = json.dumps([self.system, self.template, self.question], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def _data_dir() -> Path:
    return Path(os.environ.get("CURATE_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")


def load_prompt(spec: str = "curate") -> JudgePrompt:
    """``curate``, ``alpagasus`` (the published prompt file) or the path of a JSON prompt file.

    A prompt file holds ``system_prompt``, ``triplet_template`` and ``user_prompt`` (or
    ``user_prompt_accuracy_used``, as in AlpaGasus's own file).
    """
    if spec == "curate":
        return JudgePrompt("curate", CURATE_SYSTEM, CURATE_TEMPLATE, CURATE_QUESTION)
    path = _data_dir() / ALPAGASUS_PROMPT_FILE if spec == "alpagasus" else Path(spec)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CurateError(f"{path}: judge prompt file not found") from None
    except json.JSONDecodeError as exc:
        raise CurateError(f"{path}:{exc.lineno}: not JSON: {exc.msg}") from None
    question = raw.get("user_prompt", raw.get("user_prompt_accuracy_used")) if isinstance(raw, dict) else None
    missing = [k for k in ("system_prompt", "triplet_template") if not isinstance(raw, dict) or k not in raw]
    if missing or not isinstance(question, str):
        raise CurateError(
            f"{path}: a judge prompt needs system_prompt, triplet_template and user_prompt "
            f"(or user_prompt_accuracy_used); missing {missing or ['user_prompt']}"
        )
    return JudgePrompt(
        "alpagasus" if spec == "alpagasus" else path.stem, raw["system_prompt"], raw["triplet_template"], question
    )


_FIRST_NUMBER = re.compile(r"^[\s*#>\-]*(?:(?:score|rating|accuracy)\s*[:=]?\s*)?\**\s*(-?\d+(?:\.\d+)?)", re.I)
_LABELLED = re.compile(r"(?:score|rating)\s*(?:is|of)?\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)", re.I)


def parse_score(text: str | None) -> tuple[float | None, str, str | None]:
    """(score, reason, error): the number on the first non-empty line (AlpaGasus's rule), else one
    labelled ``score: N`` anywhere; scores outside 0-5 or no number give an error code instead."""
    if text is None or not text.strip():
        return None, "", "empty_reply"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    found = _FIRST_NUMBER.match(lines[0])
    reason = "\n".join(lines[1:]).strip()
    if found is None:
        found = _LABELLED.search(text)
        reason = text.strip()
    if found is None:
        return None, text.strip(), "no_score"
    score = float(found.group(1))
    if not 0.0 <= score <= MAX_SCORE:
        return None, text.strip(), "score_out_of_range"
    return score, reason, None


@dataclass(frozen=True)
class JudgeSampling:
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = 0


def judge_requests(records: pl.DataFrame, prompt: JudgePrompt, sampling: JudgeSampling) -> list[ChatRequest]:
    rows = records.select(
        pl.col(INSTRUCTION).fill_null(""), pl.col(INPUT).fill_null(""), pl.col(OUTPUT).fill_null("")
    ).rows()
    return [
        ChatRequest.chat(
            prompt.messages(instruction, input_, output),
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_tokens,
            seed=sampling.seed,
        )
        for instruction, input_, output in rows
    ]


def judge_annotations(ids: list[str], replies: list[ChatReply | None]) -> pl.DataFrame:
    """One row per id; ids without a reply (beyond ``--limit``) get ``judge_error = not_judged``."""
    scores, reasons, raws, errors, p_tokens, c_tokens, cached = [], [], [], [], [], [], []
    for reply in replies:
        if reply is None:
            score, reason, raw, error = None, None, None, "not_judged"
        elif reply.error is not None:
            code = "endpoint_refused" if reply.error.startswith("HTTP") else "endpoint_garbage"
            score, reason, raw, error = None, reply.error, None, code
        else:
            raw = reply.text
            score, reason, error = parse_score(raw)
        scores.append(score)
        reasons.append(reason)
        raws.append(raw)
        errors.append(error)
        p_tokens.append(reply.prompt_tokens if reply else None)
        c_tokens.append(reply.completion_tokens if reply else None)
        cached.append(reply.cached if reply else None)
    return pl.DataFrame(
        {
            "id": ids,
            SCORE: pl.Series(scores, dtype=pl.Float64),
            "judge_reason": pl.Series(reasons, dtype=pl.String),
            "judge_raw": pl.Series(raws, dtype=pl.String),
            "judge_error": pl.Series(errors, dtype=pl.String),
            "judge_prompt_tokens": pl.Series(p_tokens, dtype=pl.Int64),
            "judge_completion_tokens": pl.Series(c_tokens, dtype=pl.Int64),
            "judge_cached": pl.Series(cached, dtype=pl.Boolean),
        }
    )


def judge_records(
    records: pl.DataFrame,
    client: ChatClient,
    prompt: JudgePrompt,
    sampling: JudgeSampling | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> StageResult:
    """Rate (the first ``limit`` of) ``records``; every record is kept and gets an annotation row."""
    sampling = sampling or JudgeSampling()
    judged = records if limit is None else records.head(limit)
    meter = Progress("judge", total=judged.height, enabled=progress)
    replies: list[ChatReply | None] = client.complete_many(judge_requests(judged, prompt, sampling), meter.advance)
    meter.close()
    replies += [None] * (records.height - judged.height)
    annotations = judge_annotations(records["id"].to_list(), replies)
    judged_rows = annotations.head(judged.height)
    params = {
        "prompt": prompt.name,
        "prompt_sha256": prompt.sha256(),
        "endpoint": client.settings.public(),
        "sampling": sampling.__dict__,
        "limit": limit,
    }
    result = StageResult(STAGE, params, records.height, records, empty_rejects(), annotations)
    scores = judged_rows[SCORE].drop_nulls()
    result.stats = {
        "judged": judged.height,
        "parsed": scores.len(),
        "unparsable": judged.height - scores.len(),
        "errors": dict(sorted(judged_rows["judge_error"].drop_nulls().value_counts().rows())),
        "mean_score": round(float(scores.mean()), 4) if scores.len() else None,
        "at_least_4_5": int((scores >= 4.5).sum()),
        **client.usage.as_dict(),
        "cost_usd": client.cost(),
    }
    return result


def judge_summary(stats: dict[str, Any]) -> str:
    cost = (
        f"${stats['cost_usd']:.6f}" if stats.get("cost_usd") is not None else "cost unknown (no --price-in/--price-out)"
    )
    errors = ", ".join(f"{k} {v}" for k, v in stats["errors"].items()) or "none"
    return (
        f"judge: {stats['judged']:,} records judged, {stats['parsed']:,} parsed, {stats['unparsable']:,} unparsable "
        f"({errors}); mean score {stats['mean_score']}, {stats['at_least_4_5']:,} at 4.5 or above\n"
        f"judge: {stats['requests']:,} requests ({stats['retries']:,} retries), {stats['cache_hits']:,} cache hits, "
        f"{stats['prompt_tokens']:,} prompt + {stats['completion_tokens']:,} completion tokens, {cost}"
    )
